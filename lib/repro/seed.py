"""Seeding, threads and device: the three things every notebook's setup cell does first."""

from __future__ import annotations

import os
import random


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads from the machine: ``$REPRO_THREADS``, else ``$OMP_NUM_THREADS``, else
    the usable cores. (On a busy machine a thread pool wider than the free cores can be orders of
    magnitude slower for small models; the variables let tests and background jobs ask for one.)"""
    import torch

    if n is None:
        n = (int(os.environ.get("REPRO_THREADS") or 0) or int(os.environ.get("OMP_NUM_THREADS") or 0)
             or len(os.sched_getaffinity(0)))
    torch.set_num_threads(n)
    return n


def pick_device(device: str = "cpu") -> str:
    """Check a device name: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (cuda when present)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} asked for, but torch sees no CUDA device; use device='cpu'")
        return device
    raise ValueError(f"unknown device {device!r}; valid: 'cpu', 'cuda', 'cuda:N', 'auto'")
