"""Argument checks shared by the public functions of :mod:`repro.dcpt`.

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (a value out of range, NaN or
infinite) whose message starts with the parameter's name, and returns the value in the form the caller
uses (a float, an int, an array).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np


def is_real(x: Any) -> bool:
    if isinstance(x, np.ndarray) and x.ndim == 0:
        x = x[()]
    return isinstance(x, numbers.Real) and not isinstance(x, bool | np.bool_)


def real(name: str, x: Any, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
         hi_open: bool = False, hint: str = "") -> float:
    """A finite real number, optionally within [lo, hi] (or the open ends)."""
    if not is_real(x):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__} {x!r}")
    v = float(x)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    below = lo is not None and (v <= lo if lo_open else v < lo)
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if below or above:
        left = "(" if lo_open or lo is None else "["  # an infinite end is always open: only finite x pass
        right = ")" if hi_open or hi is None else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        rng = f"{left}{lo_s}, {hi_s}{right}"
        raise ValueError(f"{name} must lie in {rng}, got {v!r}" + (f" ({hint})" if hint else ""))
    return v


def positive(name: str, x: Any, hint: str = "") -> float:
    """A finite number > 0."""
    return real(name, x, lo=0.0, lo_open=True, hint=hint)


def fraction(name: str, x: Any) -> float:
    """A finite number in [0, 1]."""
    return real(name, x, lo=0.0, hi=1.0)


def integer(name: str, x: Any, minimum: int | None = None) -> int:
    """An int (not a bool, not a float), at least ``minimum``."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__} {x!r}")
    if minimum is not None and x < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {x}")
    return int(x)


def optional_integer(name: str, x: Any, minimum: int | None = None) -> int | None:
    return None if x is None else integer(name, x, minimum)


def choice(name: str, x: Any, valid: Iterable[Any]) -> Any:
    valid = list(valid)
    if not isinstance(x, str | int) or x not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {x!r}")
    return x


def text(name: str, x: Any) -> str:
    if not isinstance(x, str) or not x:
        raise TypeError(f"{name} must be a non-empty str, got {type(x).__name__} {x!r}")
    return x


def array(name: str, x: Any, *, positive_: bool = False, unit: bool = False, ndim: int | None = None) -> np.ndarray:
    """A float array without NaN or inf (optionally all > 0, or all in [0, 1])."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must hold numbers: {e}") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} holds NaN or infinite values ({a[bad].ravel()[:5].tolist()})")
    if positive_ and (a <= 0).any():
        raise ValueError(f"{name} must be positive, got {a[a <= 0].ravel()[:5].tolist()}")
    if unit and ((a < 0) | (a > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1], got {a[(a < 0) | (a > 1)].ravel()[:5].tolist()}")
    return a


def callable_(name: str, x: Any) -> Any:
    if not callable(x):
        raise TypeError(f"{name} must be callable, got {type(x).__name__} {x!r}")
    return x


def instance(name: str, x: Any, cls: type, hint: str = "") -> Any:
    if not isinstance(x, cls):
        raise TypeError(f"{name} must be a {cls.__name__}{hint}, got {type(x).__name__} {x!r:.80}")
    return x


def params(name: str, p: Any, keys: Iterable[str], *, nonnegative: Iterable[str] = ()) -> dict[str, float]:
    """A dict of natural law parameters holding ``keys``, each a finite number (``nonnegative`` ones >= 0)."""
    if not isinstance(p, dict):
        raise TypeError(f"{name} must be a dict of law parameters, got {type(p).__name__}")
    missing = [k for k in keys if k not in p]
    if missing:
        raise ValueError(f"{name} lacks {', '.join(missing)} (has {', '.join(map(str, p))})")
    for k in keys:
        real(f"{name}[{k!r}]", p[k], lo=0.0 if k in nonnegative else None)
    return p


def columns(name: str, frame: Any, needed: Iterable[str]) -> None:
    """``frame`` (a pandas DataFrame) holds the columns ``needed``."""
    if not hasattr(frame, "columns"):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (has {list(frame.columns)})")


WHICH = ("domain", "general")


def which(x: Any) -> str:
    return choice("which", x, WHICH)
