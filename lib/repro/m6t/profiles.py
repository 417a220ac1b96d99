"""Notebook 05's run profiles (:mod:`repro.profile`): ``smoke`` trains every configuration once at a tiny size, live,
in well under a minute; ``default`` reads the stored sweeps (``data/m6t/grid``, ``width`` and ``matched``, made by
``python -m repro runs m6t/grid`` and so on); ``full`` reads (and first completes) the GPU sweep
``m6t/full`` on ``device``."""

PROFILES = {
    "smoke": dict(source="live", tables=("m6t/smoke",), jobs=1),
    "default": dict(source="stored", tables=("m6t/grid", "m6t/width", "m6t/matched"), jobs=1),
    "full": dict(source="live", tables=("m6t/full",), jobs=1),
}
