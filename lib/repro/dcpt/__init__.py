"""D-CPT Law (Que et al., NeurIPS 2024, arXiv 2406.01375): a scaling law L(N, D, r) for domain
continual pre-training, its cross-domain form, and its three usages.

- :mod:`.laws`        the seven parameterisations L1-L7 and the Cross-Domain law (K1-K4), each as its plain
                      formula and in the paper's log-sum-exp form with analytic gradients (§3.1, App. E)
- :mod:`.fitting`     the points, Huber(delta=1e-3) on log-loss residuals, L-BFGS from the paper's
                      initialisation grid, R^2, information criteria (App. E.3)
- :mod:`.generalise`  the generalisation protocols: held-out ratios, data sizes, model sizes, domains
                      (Tables 2-4, 8)
- :mod:`.resample`    the bootstrap over runs and its percentile intervals
- :mod:`.parallel`    fits in worker processes
- :mod:`.usage`       usage 1 (ratio under a general-loss budget), usage 2 (fixed domain data),
                      usage 3 (compute allocation, Chinchilla closed form)
- :mod:`.grid`        the grid of continual pre-training runs the law is fitted to
- :mod:`.analysis`    what notebook 03 does with a grid: fit, compare, check the trends, plot

Units: the paper measures N in billions of parameters and D in billions of tokens (its usage-3
numbers reproduce only so). The functions are unit-agnostic; callers state their units (notebook 03:
millions of non-embedding parameters and millions of tokens).

No name exported here equals a submodule's name: ``repro.dcpt.fit`` is the function
:func:`repro.dcpt.fitting.fit`; the module is ``repro.dcpt.fitting``.
"""

from . import usage
from .fitting import Fit, Points, fit, huber, r2
from .laws import CROSS_FORMS, LAWS, CrossLaw, Law, get_law

__all__ = ["usage", "CROSS_FORMS", "LAWS", "CrossLaw", "Fit", "Law", "Points", "fit", "get_law", "huber", "r2"]
