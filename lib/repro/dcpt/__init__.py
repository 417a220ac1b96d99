"""D-CPT Law (Que et al., NeurIPS 2024, arXiv 2406.01375): a scaling law L(N, D, r) for domain
continual pre-training, its cross-domain form, and its three usages.

- :mod:`.laws`   the seven parameterisations L1-L7 and the Cross-Domain law (K1-K4), in the paper's
                 log-sum-exp form with analytic gradients
- :mod:`.fit`    Huber(delta=1e-3) on log-loss residuals, L-BFGS from the paper's initialisation grid,
                 R^2, information criteria, the generalisation protocols, bootstrap
- :mod:`.usage`  usage 1 (ratio under a general-loss budget), usage 2 (fixed domain data),
                 usage 3 (compute allocation, Chinchilla closed form)

Units: the paper measures N in billions of parameters and D in billions of tokens (its usage-3
numbers reproduce only so). The functions are unit-agnostic; callers state their units.
"""

from . import usage
from .fit import Fit, Points, fit, huber, r2
from .laws import CROSS_FORMS, LAWS, CrossLaw, Law, get_law

__all__ = ["usage", "CROSS_FORMS", "LAWS", "CrossLaw", "Fit", "Law", "Points", "fit", "get_law", "huber", "r2"]
