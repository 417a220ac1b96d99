"""The D-CPT grid driver on tiny synthetic token streams: rows, resume, and re-training reproduces a point."""

import numpy as np
import pytest

from repro import paths
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
    assert grid.labels() == {"s/code/r0.00"} and grid.done() == {spec.runs()[0].id}
    steps = spec.eval_steps()
    assert [r["step"] for r in grid.rows] == steps and steps[0] == 0
    grid = run_grid(spec, path, loader, VOCAB, log=lambda s: None)  # resumes: only the missing run
    assert grid.labels() == {"s/code/r0.00", "s/code/r1.00"}
    stored = Grid.load(path)
    assert len(stored.rows) == 2 * len(steps) and stored.meta["spec"]["cpt_steps"] == 12
    # re-training one stored point gives its stored losses back
    again = cpt_run(spec, spec.sizes[0], "code", 1.0, loader, VOCAB, log=lambda s: None)
    kept = [r for r in stored.rows if r["run"] == stored.find("s/code/r1.00")]
    # on one machine, one kernel path and one thread count, training is repeatable bit for bit
    assert [(r["L_g"], r["L_d"]) for r in again] == [(r["L_g"], r["L_d"]) for r in kept]
    # pure-domain data lowers the domain loss more than pure-general data
    last = {r["run"].split("@")[0]: r for r in stored.rows if r["step"] == 12}
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


@pytest.mark.parametrize("table, rid, neighbours", [
    ("grid", "s/code/r0.10", ("s/code/r0.00", "s/code/r0.20")),  # the main grid's cheapest point
    ("grid-cross", "s/law/r0.10", ("s/law/r0.00", "s/law/r0.20")),  # another stored table, same base model
])
def test_stored_grid_point_retrains_within_the_kernel_path_tolerance(table, rid, neighbours):
    """A point of a committed table, re-trained from scratch here (base model included, unless build/ caches it),
    gives its losses back within RETRAIN_RTOL, the drift measured across CPU kinds and kernel paths
    (`python -m repro bench numerics`); counts (steps, tokens, parameters) exactly. And the tolerance is tight
    enough to mean something: the re-trained run is nearer its own stored losses than its neighbours' ratios."""
    from repro.dcpt.grid import RETRAIN_RTOL, retrain

    rows, kept = retrain(paths.DATA / "dcpt" / table, rid)
    for key in ("step", "D", "N", "n_total", "r_d"):
        assert [r[key] for r in rows] == [r[key] for r in kept], key
    ours = np.array([[r["L_g"], r["L_d"]] for r in rows])
    stored = np.array([[r["L_g"], r["L_d"]] for r in kept])
    np.testing.assert_allclose(ours, stored, rtol=RETRAIN_RTOL)
    grid = Grid.load(paths.DATA / "dcpt" / table)
    for other in neighbours:
        rid = grid.find(other)  # the run's id (label@hash) from its label
        theirs = np.array([[r["L_g"], r["L_d"]] for r in sorted((r for r in grid.rows if r["run"] == rid),
                                                                 key=lambda r: r["step"])])
        assert np.abs(ours[1:] - stored[1:]).sum() < np.abs(ours[1:] - theirs[1:]).sum(), other


def test_retrain_refuses_an_unknown_run():
    from repro.dcpt.grid import retrain

    with pytest.raises(ValueError, match="rid 's/code/r0.11' is not a finished run"):
        retrain(paths.DATA / "dcpt" / "grid", "s/code/r0.11")


# -- issue 10, item 9: `dcpt grid` checks its arguments before any work ------------------------------------
def test_cli_unknown_domain_is_one_line_naming_the_parameter(tmp_path):
    """The listed case, end to end: `python -m repro dcpt grid --domains klingon` exits 2 with one line, no traceback,
    and writes nothing."""
    import subprocess
    import sys

    out = tmp_path / "grid"
    p = subprocess.run([sys.executable, "-m", "repro", "dcpt", "grid", "--domains", "klingon", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "--domains" in lines[0] and "klingon" in lines[0] and "Traceback" not in p.stderr
    assert not list(tmp_path.iterdir())


def _cli_error(capsys, argv):
    from repro.dcpt.grid import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _stored_copy(tmp_path):
    """A copy of the committed grid table (so that nothing a test runs can write to data/)."""
    import shutil

    for suffix in (".csv", ".json"):
        shutil.copy(paths.DATA / "dcpt" / f"grid{suffix}", tmp_path / f"stored{suffix}")
    return tmp_path / "stored"


@pytest.mark.parametrize("argv, flag", [
    (["--only", "s/code/r0.50", "s/klingon/r0.50"], "--only"),
    (["--only", "s/code/r0.5"], "--only"),  # the id is written r0.50
    (["--usage1", "klingon"], "--usage1"),
    (["--usage1", "code", "--domains", "code"], "--usage1"),
    (["--device", "quantum"], "--device"),
    (["--device", "cuda:99"], "--device"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "one"], "--seed"),
    (["--seed", str(2**70)], "--seed"),  # beyond torch's 64-bit generator seed
    (["--cross", "--domains", "code"], "--domains"),  # code is in the main grid, not in the cross-domain one
    (["--replicates"], "--replicates"),  # replicates of usage 1 need --usage1
])
def test_cli_bad_arguments_are_one_line_naming_the_parameter(capsys, tmp_path, argv, flag):
    out = _stored_copy(tmp_path) if "--usage1" in argv else tmp_path / "g"
    line = _cli_error(capsys, argv + ["--out", str(out)])
    assert line.startswith("python -m repro dcpt grid: error:") and flag in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if out.name == "g" else ["stored.csv", "stored.json"])


@pytest.mark.parametrize("csv, meta, says", [
    ("a,b\n", None, "columns ['a', 'b']"),  # not a grid table
    (None, "{", "is not JSON"),  # a broken provenance file
    ("run,size,N,n_total,domain,r_d,step,D,L_g,L_d\ns/code/r0.10@x,s,1,2,code,0.1,0,0,nan?,1\n", None, "line 2"),
])
def test_cli_refuses_a_malformed_table_at_out_in_one_line(capsys, tmp_path, csv, meta, says):
    out = tmp_path / "bad"
    for text, suffix in ((csv, ".csv"), (meta, ".json")):
        if text is not None:
            out.with_suffix(suffix).write_text(text)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    line = _cli_error(capsys, ["--out", str(out), "--only", "s/code/r0.00"])
    assert line.startswith("python -m repro dcpt grid: error: --out:") and says in line, line
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


def test_cli_refuses_another_spec_at_out_before_work(capsys, tmp_path):
    """--seed 1 against a table made with seed 0: refused naming --out and the differing setting; nothing written."""
    out = _stored_copy(tmp_path)
    before = out.with_suffix(".json").read_bytes()
    line = _cli_error(capsys, ["--seed", "1", "--out", str(out)])
    assert "--out" in line and "seed" in line
    assert out.with_suffix(".json").read_bytes() == before and not list(tmp_path.glob("*usage1*"))


# -- issue 10, item 10: the base-model cache is keyed by all that decides its content ---------------------
def _base(tmp_path, size, load=None, vocab=VOCAB, cache=None, **kw):
    from repro.dcpt.grid import base_model

    spec = GridSpec(**{**dict(sizes=(size,), domains=("code",), ratios=(0.0, 1.0), context=16, batch_size=4,
                              base_steps=10, cpt_steps=12, warmup_steps=2, n_evals=4, eval_batches=2), **kw})
    logs = []
    model = base_model(spec, size, load or loader, vocab, cache=cache, log=logs.append)
    return {k: v.clone() for k, v in model.state_dict().items()}, bool(logs)


def _same(a, b):
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and (a[k] == b[k]).all() for k in a)


def test_base_cache_tells_sizes_with_one_name_apart(tmp_path, monkeypatch):
    """The listed case: ("xs", 1, 4, 32) used to load the weights cached for ("xs", 1, 2, 32) (same name, same shapes)."""
    monkeypatch.setattr("repro.paths.BUILD", tmp_path / "build")
    two, trained = _base(tmp_path, ("xs", 1, 2, 32))
    assert trained
    four, trained = _base(tmp_path, ("xs", 1, 4, 32))
    assert trained and not _same(two, four)
    fresh, _ = _base(tmp_path, ("xs", 1, 4, 32), cache=tmp_path / "elsewhere.pt")
    assert _same(four, fresh)
    again, trained = _base(tmp_path, ("xs", 1, 2, 32))  # the cache still serves what it holds
    assert not trained and _same(again, two)


def test_base_cache_tells_data_vocab_and_base_settings_apart(tmp_path, monkeypatch):
    monkeypatch.setattr("repro.paths.BUILD", tmp_path / "build")
    size = ("xs", 1, 2, 32)
    ref, _ = _base(tmp_path, size)

    def other_tokens(corpus, split):  # the same corpus rebuilt: other general training tokens
        return (loader(corpus, split).astype(np.int64) * 7 % VOCAB).astype(np.uint16)

    new_data, trained = _base(tmp_path, size, load=other_tokens)
    assert trained and not _same(ref, new_data)
    new_vocab, trained = _base(tmp_path, size, vocab=VOCAB + 8)  # used to fail loading (shape mismatch)
    assert trained
    new_lr, trained = _base(tmp_path, size, base_lr=1e-2)
    assert trained and not _same(ref, new_lr)
    same, trained = _base(tmp_path, size, cpt_steps=20)  # a CPT-only setting: the base model is the same
    assert not trained and _same(ref, same)
    # an explicit cache path whose recorded key is another's is not trusted
    _base(tmp_path, size, cache=tmp_path / "mine.pt")
    _, trained = _base(tmp_path, ("xs", 1, 4, 32), cache=tmp_path / "mine.pt")
    assert trained


def test_grid_table_is_resumed_only_from_the_same_inputs(tmp_path, monkeypatch):
    """The table is a cache of runs too: resuming it with other token data is refused before any work."""
    monkeypatch.setattr("repro.paths.BUILD", tmp_path / "build")
    spec = tiny(tmp_path)
    run_grid(spec, tmp_path / "grid", loader, VOCAB, only=["s/code/r0.00"], log=lambda s: None)

    def other_tokens(corpus, split):
        return (loader(corpus, split).astype(np.int64) * 7 % VOCAB).astype(np.uint16)

    with pytest.raises(ValueError, match="other inputs .*general/train"):
        run_grid(spec, tmp_path / "grid", other_tokens, VOCAB, log=lambda s: None)
    with pytest.raises(ValueError, match="other inputs .*vocab"):
        run_grid(spec, tmp_path / "grid", loader, VOCAB + 8, log=lambda s: None)
    assert Grid.load(tmp_path / "grid").labels() == {"s/code/r0.00"}


# -- issue 10, item 11: run ids never collide ---------------------------------------------------------------
def test_close_ratios_get_distinct_ids_and_keep_their_rows(tmp_path, monkeypatch):
    """The listed case: 0.92 and 0.924 both got `xs/code/r0.92`, and the second run's rows replaced the first's."""
    monkeypatch.setattr("repro.paths.BUILD", tmp_path / "build")
    spec = GridSpec(sizes=(("xs", 1, 2, 16),), domains=("code",), ratios=(0.92, 0.924), context=16, batch_size=4,
                    base_steps=10, cpt_steps=12, warmup_steps=2, n_evals=4, eval_batches=2)
    assert [r.label for r in spec.runs()] == ["xs/code/r0.92", "xs/code/r0.924"]
    grid = run_grid(spec, tmp_path / "grid", loader, VOCAB, log=lambda s: None)
    stored = Grid.load(tmp_path / "grid")
    assert stored.labels() == {"xs/code/r0.92", "xs/code/r0.924"}
    assert sorted({r["r_d"] for r in stored.rows}) == [0.92, 0.924] and len(stored.rows) == 2 * len(spec.eval_steps())
    info = grid.by_label()["xs/code/r0.924"]
    assert info["machine"]["cpu_model"] and info["machine"]["threads"] == 1 and info["spec"]["device"] == "cpu"


def test_run_ids_are_distinct_and_the_stored_tables_keep_theirs():
    from repro.dcpt.grid import ratio_text, run_label, spec_from_json

    # floats that print alike at two decimals, or at all: each keeps its own label
    for a, b in [(0.3, 0.1 + 0.2), (0.5, 0.5000001), (0.1, 0.1000000000000001), (0.0, 1e-300)]:
        assert a != b and run_label("s", "code", a) != run_label("s", "code", b)
        assert float(ratio_text(a)) == a and float(ratio_text(b)) == b
    assert run_label("s", "code", 0.1) == "s/code/r0.10" and run_label("s", "code", -0.0) == "s/code/r0.00"
    # the committed tables' ids are what their specs give now, on the CPU
    for meta in sorted((paths.DATA / "dcpt").glob("grid*.json")):
        stored = Grid.load(meta.with_suffix(""))
        specs = stored.meta["specs"] if "specs" in stored.meta else [stored.meta["spec"]]  # replicates: one per seed
        runs = {r.id: r for s in specs for r in spec_from_json(s).runs("cpu")}
        assert stored.done() <= set(runs), meta.name
        assert {r["run"] for r in stored.rows} == stored.done()
        assert all(stored.meta["runs"][i]["label"] == runs[i].label for i in stored.done())
    # specs whose ids would collide are refused
    base = dict(sizes=(("s", 1, 2, 16),), domains=("code",))
    assert GridSpec(**base, seed=1).runs()[0].id != GridSpec(**base).runs()[0].id  # the hash covers the settings
    with pytest.raises(ValueError, match="ratios holds duplicates"):
        GridSpec(**base, ratios=(0.5, 0.5))
    with pytest.raises(ValueError, match="sizes holds duplicates"):
        GridSpec(sizes=(("s", 1, 2, 16), ("s", 1, 4, 16)), domains=("code",))
    with pytest.raises(ValueError, match="must not contain '/'"):  # "a/b" + "c" and "a" + "b/c" would both be a/b/c
        GridSpec(sizes=(("a/b", 1, 2, 16),), domains=("c",))


# -- issue 12: the committed tables' run ids were converted to repro.runs' scheme, every value kept ---------------
def test_committed_tables_are_the_conversion_of_their_old_form(tmp_path):
    """Each committed table, put back into the form it had before repro.runs (ids `s/code/r0.10`, the old
    provenance), converts to exactly the committed files; a converted table is not converted twice."""
    import json

    from repro.dcpt.grid import convert_legacy_table

    legacy_tables = [c for c in sorted((paths.DATA / "dcpt").glob("grid*.csv"))
                     if "converted" in json.loads(c.with_suffix(".json").read_text())]
    # the tables made before repro.runs; those made since (usage 1's replicates) were never converted
    assert sorted(c.stem for c in legacy_tables) == ["grid", "grid-cross", "grid-usage1-code", "grid-usage1-math"]
    for csv in legacy_tables:
        new = json.loads(csv.with_suffix(".json").read_text())
        label = {rid: info["label"] for rid, info in new["runs"].items()}
        old = {k: v for k, v in new.items() if k != "converted"}
        old["runs"] = {info["label"]: {"seconds": info["seconds"], "cpu_seconds": info["cpu_seconds"],
                                       "git": info["git"]["revision"], "finished": info["end"]}
                       for info in new["runs"].values()}
        lines = csv.read_text().splitlines()
        legacy = tmp_path / csv.stem
        legacy.with_suffix(".csv").write_text("\n".join([lines[0]] + [label[ln.split(",", 1)[0]] + "," +
                                                                      ln.split(",", 1)[1] for ln in lines[1:]]) + "\n")
        legacy.with_suffix(".json").write_text(json.dumps(old, indent=1) + "\n")
        assert convert_legacy_table(legacy, when=new["converted"]["when"]) == len(new["runs"])
        assert legacy.with_suffix(".csv").read_text() == csv.read_text(), csv.name
        assert json.loads(legacy.with_suffix(".json").read_text()) == new, csv.name
        with pytest.raises(ValueError, match="holds no runs of the old scheme"):
            convert_legacy_table(legacy)
    # the stored ids: the label and the hash of the run's spec (the grid cut to one run, on the CPU)
    assert Grid.load(paths.DATA / "dcpt" / "grid").find("s/code/r0.10") == "s/code/r0.10@2ae0bfe59d"


# -- issue 11: usage 1's measured side over three seeds ----------------------------------------------------------
def test_usage1_candidates_are_the_verification_ratios_and_the_grids_near_the_prediction():
    from repro.dcpt.grid import usage1_candidates

    grid = (0.0, 0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0)
    assert usage1_candidates(grid, (0.73, 0.78, 0.83, 0.88, 0.93), 0.8335) == \
        (0.67, 0.73, 0.78, 0.8, 0.83, 0.88, 0.9, 0.93, 1.0)
    assert usage1_candidates(grid, (0.5,), 0.5, window=0.1) == (0.5,)  # 0.4 and 0.6 are not grid ratios
    with pytest.raises(ValueError, match="window"):
        usage1_candidates(grid, (0.5,), 0.5, window=1.5)


@pytest.mark.parametrize("domain", ["code", "math"])
def test_usage1_replicates_retrain_every_candidate_under_new_seeds(domain):
    """The replicate sweep holds each candidate ratio once per seed at the verification size, base model
    included in the spec's seed; labels name the seed and never collide with seed 0's runs; the committed table
    (where present) holds exactly those runs."""
    from repro.dcpt.grid import REPLICATE_SEEDS, spec_from_json, usage1_replicates_sweep

    grid_path = paths.DATA / "dcpt" / "grid"
    sw = usage1_replicates_sweep(grid_path, domain)
    verify = Grid.load(f"{grid_path}-usage1-{domain}")
    r_star = verify.meta["prediction"]["r_d"]
    ratios = sorted({r.r_d for r in sw.specs})
    assert {r.seed for r in sw.specs} == set(REPLICATE_SEEDS) and len(sw.specs) == len(ratios) * len(REPLICATE_SEEDS)
    assert all(abs(r - r_star) <= 0.25 + 1e-9 for r in ratios)
    assert {r.size[0] for r in sw.specs} == {"m"} and all(r.label.endswith(f"/seed{r.seed}") for r in sw.specs)
    seed0 = {r.id for s in (Grid.load(grid_path), verify) for r in spec_from_json(s.meta["spec"]).runs("cpu")}
    assert not seed0 & set(sw.ids())
    stored = Grid.load(f"{grid_path}-usage1-{domain}-seeds")
    if stored.meta.get("runs"):
        assert stored.done() <= set(sw.ids()) and stored.meta["prediction"] == verify.meta["prediction"]


def test_usage1_replicates_refuse_bad_arguments_naming_them(tmp_path):
    from repro.dcpt.grid import GridArgumentError, usage1_replicates_sweep

    grid_path = paths.DATA / "dcpt" / "grid"
    for kw, param in ((dict(seeds=(1, 1)), "seeds"), (dict(seeds=(-1,)), "seeds"), (dict(seeds=(1.5,)), "seeds"),
                      (dict(window=0.0), "window"), (dict(device="quantum"), "device")):
        with pytest.raises(GridArgumentError) as e:
            usage1_replicates_sweep(grid_path, "code", **kw)
        assert e.value.param == param
    with pytest.raises(GridArgumentError) as e:
        usage1_replicates_sweep(grid_path, "klingon")
    assert e.value.param == "domain"
