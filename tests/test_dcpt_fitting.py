"""repro.dcpt.fitting, resample and grid: pins on the constants of App. E.3 (the Huber delta, the initialisation
grid) and known answers for the percentile interval and usage 1's operating point."""

import math

import numpy as np
import pandas as pd
import pytest

from repro.dcpt import LAWS, Points, huber
from repro.dcpt.fitting import Fit, grid_objective, grid_starts
from repro.dcpt.laws import CROSS_LAWS
from repro.dcpt.resample import interval

COEF = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)  # App. E.3 (card §7): a, b, c in {-1, 0, ..., 5}
LOG_E = (-1.0, -0.5, 0.0, 0.5, 1.0)  # e in {-1, -0.5, ..., 1}
EXP = (-0.5, 0.0, 0.5)  # alpha, beta, gamma, eta1 in {-0.5, 0, 0.5}
EPS = (0.0, 0.5)  # eps in {0, 0.5}


def _huber_1e3(res):
    """Huber with delta = 1e-3, written out (App. E.3)."""
    a = np.abs(res)
    return np.where(a <= 1e-3, 0.5 * res**2, 1e-3 * (a - 0.5e-3))


def test_huber_default_delta_is_the_papers_1e_3():
    np.testing.assert_allclose(huber(np.array([5e-4, -2e-3, 0.05])), [1.25e-7, 1.5e-6, 4.95e-5], rtol=1e-12)


def _l3_case():
    """L3 at a fixed theta, and losses off its predictions by known log residuals (inside and outside delta)."""
    law = LAWS["L3"]
    theta = np.array([0.4, -0.7, 0.35, -2.3, 0.3, -3.0, 0.5, 0.47, 0.1])
    N, D = np.array([0.5, 1.8, 4.0, 0.5, 1.8, 4.0]), np.array([0.2, 1.0, 5.0, 26.0, 0.5, 3.0])
    r = np.array([0.0, 0.2, 0.5, 0.8, 1.0, 0.33])
    res = np.array([5e-4, -8e-4, 2e-3, -0.01, 0.05, -0.08])  # log L_hat - log L
    X = Points(N, D, r, np.ones(6)).X(0.2)
    L = np.exp(law.log_predict(theta, X)[0][0] - res)
    return law, theta, Points(N, D, r, L), res


def test_objective_and_metrics_use_huber_with_delta_1e_3():
    law, theta, pts, res = _l3_case()
    X = pts.X(0.2)
    want = _huber_1e3(res)
    got = grid_objective(law, theta[None], X, np.log(pts.L))
    np.testing.assert_allclose(got, [want.sum()], rtol=1e-9)
    np.testing.assert_allclose(want.sum(), 1.40445e-4, rtol=1e-9)  # by hand: 1.25e-7 + 3.2e-7 + ... + 7.95e-5
    f = Fit(law, theta, 0.2, float(want.sum()), pts.n, 0, 0, 0.0, True)
    np.testing.assert_allclose(f.metrics(pts)["huber"], want.mean(), rtol=1e-9)


def _expected_grid(name):
    if name == "e":
        return LOG_E
    if name in ("a", "b", "c", "c1", "f", "lsigma"):
        return COEF
    if name == "eps":
        return EPS
    return EXP


@pytest.mark.parametrize("law", list(LAWS.values()) + list(CROSS_LAWS.values()), ids=lambda law: law.name)
def test_initialisation_grid_values_are_the_papers(law):
    assert {k: tuple(v) for k, v in law.grid.items()} == {n: _expected_grid(n) for n in law.names}


def test_l3_grid_has_277830_points():
    law = LAWS["L3"]
    assert math.prod(len(v) for v in law.grid.values()) == 277_830
    starts = grid_starts(law)
    # gamma's -0.5 and 0 are clipped to its bound 1e-3 (C0 needs gamma > 0), eps's 0 to 1e-3: 2/3 stay distinct
    assert starts.shape == (277_830 * 2 // 3, 9)
    for j, name in enumerate(law.names):
        lo = law.bounds[name][0]
        want = sorted({max(v, lo) if lo is not None else v for v in _expected_grid(name)})
        np.testing.assert_array_equal(np.unique(starts[:, j]), want)


def test_interval_is_the_central_percentile_range():
    np.testing.assert_allclose(interval(np.arange(101.0), 0.9), (5.0, 95.0), rtol=1e-12)
    assert interval(np.r_[np.arange(101.0), np.nan, np.inf], 0.5) == (25.0, 75.0)  # non-finite draws left out
    lo, hi = interval(np.array([np.nan, np.inf]))
    assert math.isnan(lo) and math.isnan(hi)


def test_usage1_base_is_the_size_its_run_length_and_its_base_loss():
    from repro.dcpt.grid import usage1_base

    frame = pd.DataFrame({"size": ["s", "s", "s", "m", "m"], "N": [2e5, 2e5, 2e5, 4e5, 4e5],
                          "D": [0.0, 1e6, 3e6, 0.0, 2e6], "step": [0, 10, 30, 0, 20], "L_g": [4.0, 3.5, 3.2, 3.9, 3.4]})
    assert usage1_base(frame, "s") == (0.2, 3.0, 4.0)
    with pytest.raises(ValueError, match="size 'l'"):
        usage1_base(frame, "l")
    with pytest.raises(ValueError, match="step-0"):
        usage1_base(frame[frame["step"] > 0], "m")


def test_the_package_shadows_none_of_its_modules():
    import importlib
    import pkgutil
    import types

    import repro.dcpt as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        m = importlib.import_module(f"repro.dcpt.{mod.name}")
        assert getattr(pkg, mod.name, m) is m and isinstance(m, types.ModuleType), mod.name
