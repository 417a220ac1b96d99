"""Notebook 02's run profiles (:mod:`repro.profile`): ``smoke`` runs a few trials live in well under a minute,
``default`` reads the stored trials (``data/c4/``) and simulates the rest on 2 cores in minutes, ``full`` runs
more ranks and trials live on a larger machine."""

PROFILES = {
    "smoke": dict(source="live", trials=1, healthy=1, healthy_iterations=40, world=4, overhead_rounds=5,
                  restart_iterations=20, c4p_seeds=20, months=200, cost_hosts=(16, 32), cost_seeds=1),
    "default": dict(source="stored", trials=80, healthy=10, healthy_iterations=200, world=4, overhead_rounds=30,
                    restart_iterations=30, c4p_seeds=200, months=2000, cost_hosts=(16, 32, 64, 128), cost_seeds=3),
    "full": dict(source="live", trials=100, healthy=20, healthy_iterations=500, world=8, overhead_rounds=100,
                 restart_iterations=60, c4p_seeds=1000, months=10000, cost_hosts=(16, 32, 64, 128, 256),
                 cost_seeds=5),
}


def check_sizes(cfg) -> None:
    """Refuse sizes that cannot run, before any work: ``ValueError`` naming the setting (``trials``, ``healthy``,
    ``healthy_iterations``, ``c4p_seeds``, ``months``, ``overhead_rounds``, ``restart_iterations``, ``cost_seeds``:
    ints of at least 1; ``world`` is checked by the job itself)."""
    for name in ("trials", "healthy", "healthy_iterations", "c4p_seeds", "months", "overhead_rounds",
                 "restart_iterations", "cost_seeds"):
        v = cfg[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: must be an int of at least 1, got {v!r}")
