"""PICASSO data: generator, validation, micro-batch split, Criteo reader."""

import pytest
import torch

from repro.picasso.criteo import CriteoFormatError, format_criteo_line, parse_criteo_line, read_criteo
from repro.picasso.data import (
    Batch,
    BatchError,
    ClickLogGenerator,
    make_schema,
    split_batch,
    validate_batch,
    zipf_ranks,
)


@pytest.fixture(scope="module")
def schema():
    return make_schema(30, seed=2, vocab_range=(20, 5000), p_empty=0.2)


def test_generator_is_deterministic_and_valid(schema):
    g1, g2 = ClickLogGenerator(schema, seed=4), ClickLogGenerator(schema, seed=4)
    a, b = g1.batch(3, 64), g2.batch(3, 64)
    for x, y in zip((a.ids, a.lengths, a.dense, a.labels), (b.ids, b.lengths, b.dense, b.labels), strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.ids, g1.batch(4, 64).ids)
    validate_batch(a, schema)
    assert a.lengths.shape == (30, 64) and a.dense.shape == (64, 13)
    assert (a.lengths == 0).any(), "empty bags must occur"
    assert (a.lengths > 1).any(), "multi-hot bags must occur"
    assert 0.05 < float(a.labels.mean()) < 0.95


def test_schema_fields_and_groups():
    s = make_schema(1000, seed=0)
    assert s.n_fields == 1000 and set(s.groups()) == {8, 16, 32}
    assert all(100 <= v <= 100_000 for v in s.vocab)
    with pytest.raises(ValueError, match="n_fields"):
        make_schema(0)


def test_zipf_skew_orders_frequencies():
    V = torch.full((200_000,), 1000)
    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    skewed = torch.bincount(zipf_ranks(u, V, 1.2), minlength=1000).double()
    uniform = torch.bincount(zipf_ranks(u, V, 0.0), minlength=1000).double()
    assert skewed[:10].sum() / skewed.sum() > 0.4
    assert uniform[:10].sum() / uniform.sum() < 0.03
    assert int(zipf_ranks(u, V, 1.0).max()) < 1000


def test_validate_names_field_and_row(schema):
    b = ClickLogGenerator(schema, seed=1).batch(0, 16)
    f = 5
    start = int(b.lengths[:f].sum())
    row = int((b.lengths[f] > 0).nonzero()[0])
    pos = start + int(b.lengths[f, :row].sum())
    bad = b.ids.clone()
    bad[pos] = schema.vocab[f]
    with pytest.raises(BatchError, match=rf"field C6 \(index 5\) row {row}: ID out of range"):
        validate_batch(Batch(bad, b.lengths, b.dense, b.labels), schema)
    bad[pos] = -3
    with pytest.raises(BatchError, match=rf"field C6 \(index 5\) row {row}: negative ID"):
        validate_batch(Batch(bad, b.lengths, b.dense, b.labels), schema)
    with pytest.raises(BatchError, match="29 categorical fields, the schema has 30"):
        validate_batch(Batch(b.ids[: int(b.lengths[:29].sum())], b.lengths[:29], b.dense, b.labels), schema)
    with pytest.raises(BatchError, match="lengths sum to"):
        validate_batch(Batch(b.ids[:-1], b.lengths, b.dense, b.labels), schema)


def test_split_batch_partitions_samples(schema):
    b = ClickLogGenerator(schema, seed=1).batch(0, 50)
    parts = split_batch(b, 3)
    assert [p.batch_size for p in parts] == [17, 16, 17]
    for p in parts:
        validate_batch(p, schema)
    # per field, concatenating the micro-batches' IDs gives the field's IDs back
    fb = b.ids.split(b.lengths.sum(1).tolist())
    fp = [p.ids.split(p.lengths.sum(1).tolist()) for p in parts]
    for f in range(schema.n_fields):
        assert torch.equal(fb[f], torch.cat([x[f] for x in fp]))
    with pytest.raises(ValueError, match="micro-batches"):
        split_batch(b, 0)


CRITEO = make_schema(26, seed=0, vocab_range=(50, 500), multi_hot_frac=0.0)


def _line(label=1, cat0=0xDEADBEEF):
    return format_criteo_line(label, [1, None, 3, 0, 5, 6, 7, 8, 9, 10, -1, 12, 13],
                              [cat0] + [None] * 5 + list(range(20)))


def test_criteo_reader_round_trip(tmp_path):
    p = tmp_path / "day.txt"
    p.write_text("".join(_line(label=i % 2, cat0=i * 977) for i in range(10)))
    batches = list(read_criteo(p, CRITEO, batch_size=4))
    assert [b.batch_size for b in batches] == [4, 4, 2]
    for b in batches:
        validate_batch(b, CRITEO)
    assert int(batches[0].lengths[1].sum()) == 0  # C2 empty everywhere: empty bags
    assert batches[0].labels.tolist() == [0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("line, msg", [
    ("1\t2\t3\n", r"row 7: expected 40 tab-separated fields"),
    (_line().replace("1", "2", 1), r"row 7, field label"),
    (_line().replace("\t3\t", "\t3.5\t", 1), r"row 7, field I3: expected an integer"),
    (_line(cat0=0).replace("00000000", "zz000000", 1), r"row 7, field C1: expected a hexadecimal"),
])
def test_criteo_malformed_line_names_row_and_field(line, msg, tmp_path):
    with pytest.raises(CriteoFormatError, match=msg):
        parse_criteo_line(line, 7, CRITEO.vocab)
    p = tmp_path / "bad.txt"
    p.write_text(_line() * 6 + line)
    with pytest.raises(CriteoFormatError, match=msg):
        list(read_criteo(p, CRITEO, batch_size=4))
