"""The D-CPT grid driver on tiny synthetic token streams: rows, resume, and re-training reproduces a point."""

import numpy as np
import pytest

from repro.dcpt.grid import Grid, GridSpec, cpt_run, eval_schedule, points, run_grid

pytestmark = pytest.mark.slow
VOCAB = 64


def loader(corpus, split):
    # distinct, learnable streams per corpus: a repeating pattern plus noise
    rng = np.random.default_rng({"general": 1, "code": 2}[corpus]
                                + (0 if split == "train" else 100))
    base = np.tile(np.arange(0, 32 if corpus == "general" else 64, 2 if corpus == "code" else 1), 400)
    noise = rng.integers(0, VOCAB, base.shape)
    return np.where(rng.random(base.shape) < 0.1, noise, base).astype(np.uint16)


def tiny(tmp_path, **kw):
    spec = GridSpec(sizes=(("s", 1, 2, 16),), domains=("code",), ratios=(0.0, 1.0), context=16, batch_size=4,
                    base_steps=10, cpt_steps=12, warmup_steps=2, n_evals=4, eval_batches=2, **kw)
    return spec


def test_grid_rows_resume_and_rerun(tmp_path, monkeypatch):
    monkeypatch.setattr("repro.paths.BUILD", tmp_path / "build")
    spec = tiny(tmp_path)
    path = tmp_path / "grid"
    grid = run_grid(spec, path, loader, VOCAB, only=["s/code/r0.00"], log=lambda s: None)
    assert grid.done() == {"s/code/r0.00"}
    steps = spec.eval_steps()
    assert [r["step"] for r in grid.rows] == steps and steps[0] == 0
    grid = run_grid(spec, path, loader, VOCAB, log=lambda s: None)  # resumes: only the missing run
    assert grid.done() == {"s/code/r0.00", "s/code/r1.00"}
    stored = Grid.load(path)
    assert len(stored.rows) == 2 * len(steps) and stored.meta["spec"]["cpt_steps"] == 12
    # re-training one stored point gives its stored losses back
    again = cpt_run(spec, spec.sizes[0], "code", 1.0, loader, VOCAB, log=lambda s: None)
    kept = [r for r in stored.rows if r["run"] == "s/code/r1.00"]
    np.testing.assert_allclose([r["L_d"] for r in again], [r["L_d"] for r in kept], rtol=1e-6)
    # pure-domain data lowers the domain loss more than pure-general data
    last = {r["run"]: r for r in stored.rows if r["step"] == 12}
    assert last["s/code/r1.00"]["L_d"] < last["s/code/r0.00"]["L_d"]
    pts = points(stored.frame(), "domain")
    assert pts.n == 2 * (len(steps) - 1) and set(np.unique(pts.r)) == {0.0, 1.0}
    with pytest.raises(ValueError, match="another spec"):
        run_grid(tiny(tmp_path, seed=1), path, loader, VOCAB, log=lambda s: None)


def test_spec_and_schedule_errors():
    with pytest.raises(ValueError, match=r"ratios must lie in \[0, 1\]"):
        GridSpec(sizes=(("s", 1, 2, 16),), ratios=(0.5, 1.5))
    with pytest.raises(ValueError, match="must divide d_model"):
        GridSpec(sizes=(("s", 1, 3, 16),))
    assert eval_schedule(100, 5, first=10)[:2] == [0, 10] and eval_schedule(100, 5, first=10)[-1] == 100


def test_usage1_ratios_surround_the_prediction():
    from repro.dcpt.grid import usage1_ratios

    assert usage1_ratios(0.924) == (0.82, 0.87, 0.92, 0.97, 1.0)
    assert usage1_ratios(0.02) == (0.0, 0.02, 0.07, 0.12)  # clipped to [0, 1], duplicates merged


def test_stored_grid_point_retrains_to_its_stored_losses():
    """One point of the committed grid table (data/dcpt/grid), re-trained from scratch here, gives its losses back:
    the base model is pre-trained again (unless build/ holds it) and the cheapest CPT run is repeated."""
    from repro import paths
    from repro.data import load_tokens, vocab_size

    stored = Grid.load(paths.DATA / "dcpt" / "grid")
    spec = GridSpec(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                       for k, v in stored.meta["spec"].items()})
    size = spec.sizes[0]
    rid = f"{size[0]}/code/r0.10"
    assert rid in stored.done()
    rows = cpt_run(spec, size, "code", 0.10, lambda c, s: load_tokens(c, s, profile=spec.token_profile),
                   vocab_size(), log=lambda s: None)
    kept = sorted((r for r in stored.rows if r["run"] == rid), key=lambda r: r["step"])
    assert [r["step"] for r in rows] == [r["step"] for r in kept]
    for key in ("L_g", "L_d", "D", "N"):
        np.testing.assert_allclose([r[key] for r in rows], [r[key] for r in kept], rtol=1e-5, err_msg=key)
