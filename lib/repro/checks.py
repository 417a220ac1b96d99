"""Argument checks shared by the library's validators (model configs, samplers, training configs)."""

from __future__ import annotations

import numpy as np

__all__ = ["is_int"]


def is_int(v: object, *, numpy: bool = True) -> bool:
    """Whether ``v`` is an integer: a Python ``int`` or, when ``numpy``, a NumPy integer scalar; never a ``bool``.

    ``bool`` is a subclass of ``int`` in Python, so ``True`` would pass a plain ``isinstance`` check and
    silently mean 1; it is refused here. ``numpy=False`` accepts Python ints only (for values that are
    written to JSON as they are, such as :class:`repro.nn.gpt.GPTConfig`'s fields). Raises nothing.
    """
    types = (int, np.integer) if numpy else int
    return isinstance(v, types) and not isinstance(v, bool)
