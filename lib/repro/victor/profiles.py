"""Notebook 06's run profiles (:mod:`repro.profile`): ``smoke`` pre-trains every configuration once at a tiny size,
live, in well under a minute; ``default`` reads the stored sweeps (``data/victor/ablation`` and ``queue``, made by
``python -m repro runs victor/ablation --jobs 2`` and ``victor/queue``); ``full`` reads (and first completes) the
GPU sweep ``victor/full`` on ``device``."""

PROFILES = {
    "smoke": dict(source="live", tables=("victor/smoke",), data="smoke", jobs=1),
    "default": dict(source="stored", tables=("victor/ablation", "victor/queue"), data="default", jobs=1),
    "full": dict(source="live", tables=("victor/full",), data="default", jobs=1),
}
