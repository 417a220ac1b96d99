"""Notebook 01's run profiles (:mod:`repro.profile`): ``smoke`` trains a tiny teacher and every method live, in well
under a minute; ``default`` reads the stored sweeps (``data/ddk/teacher``, ``main`` and ``ablation``, made by
``python -m repro runs ddk/teacher`` and so on); ``full`` reads (and first completes) the GPU sweeps
``ddk/full-teacher`` and ``ddk/full``. ``cost_steps`` and ``cost_rounds`` size the live timing of CPT, KD and DDK
(:func:`repro.ddk.cost.measure`; default: five rounds of 40 steps, about two minutes on 2 cores)."""

PROFILES = {
    "smoke": dict(source="live", tables=("ddk/smoke-teacher", "ddk/smoke"), jobs=1, cost_steps=8, cost_rounds=3),
    "default": dict(source="stored", tables=("ddk/teacher", "ddk/main", "ddk/ablation"), jobs=1, cost_steps=40,
                    cost_rounds=5),
    "full": dict(source="live", tables=("ddk/full-teacher", "ddk/full"), jobs=1, cost_steps=400, cost_rounds=5),
}
