"""PICASSO data: generator, validation, micro-batch split, Criteo reader."""

import re

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
    ("1\t2\t3\n", r"line 7: expected 40 tab-separated fields \(label, I1..I13, C1..C26\), found 3$"),
    (_line().replace("1", "2", 1), r"line 7, field label: expected 0 or 1, found '2'"),
    (_line().replace("\t3\t", "\t3.5\t", 1), r"line 7, field I3: expected an integer, found '3.5'"),
    (_line(cat0=0).replace("00000000", "zz000000", 1), r"line 7, field C1: expected a hexadecimal value, found "
                                                       r"'zz000000'"),
])
def test_criteo_malformed_line_names_file_line_and_field(line, msg, tmp_path):
    with pytest.raises(CriteoFormatError, match="^<line> " + msg):
        parse_criteo_line(line, 7, CRITEO.vocab)
    p = tmp_path / "bad.txt"
    p.write_text(_line() * 6 + line)
    with pytest.raises(CriteoFormatError, match="^" + re.escape(str(p)) + " " + msg):
        list(read_criteo(p, CRITEO, batch_size=4))


def _read_bad(tmp_path, data: bytes, name="day_0.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(CriteoFormatError) as err:
        list(read_criteo(p, CRITEO, batch_size=4))
    return str(err.value), err.value, re.escape(str(p))


@pytest.mark.parametrize("bad_line, found", [
    ("1\t2\t3\n", 3),  # issue case: too few fields
    (_line().rstrip("\n") + "\t\n", 41),  # own: a trailing tab, one field too many
    ("\n", 1),  # own: a blank line
    (_line().replace("\t", " ", 1), 39),  # own: a space instead of the label's tab
])
def test_criteo_field_count_error_names_file_line_and_counts(bad_line, found, tmp_path):
    """Item 17: the wrong number of fields names the file, the line and the expected and found counts."""
    msg, _, path = _read_bad(tmp_path, (_line() * 4 + bad_line + _line()).encode())
    assert re.fullmatch(rf"{path} line 5: expected 40 tab-separated fields \(label, I1..I13, C1..C26\), "
                        rf"found {found}", msg), msg


def test_criteo_invalid_utf8_names_line_and_byte_offset(tmp_path):
    """Item 17, issue case: a byte that is not UTF-8 gives a ValueError (not a bare UnicodeDecodeError) with
    the line and the byte offsets, chained from the UnicodeDecodeError."""
    good = _line().encode()
    bad = good[:10] + b"\xff" + good[10:]
    msg, err, path = _read_bad(tmp_path, good * 2 + bad + good)
    assert isinstance(err, ValueError) and isinstance(err.__cause__, UnicodeDecodeError)
    assert re.fullmatch(rf"{path} line 3: invalid UTF-8 at byte 10 of the line \(byte {2 * len(good) + 10} of the "
                        rf"file\): b'\\xff' \(invalid start byte\)", msg), msg


def test_criteo_truncated_utf8_sequence_at_end_of_file(tmp_path):
    """Own case: a multi-byte sequence cut short at the end of the last line (no newline), in a C field."""
    good = _line().encode()
    last = good.rstrip(b"\n") + b"\xc3"
    msg, err, path = _read_bad(tmp_path, good + last)
    assert isinstance(err.__cause__, UnicodeDecodeError)
    k = len(last) - 1
    assert re.fullmatch(rf"{path} line 2: invalid UTF-8 at byte {k} of the line \(byte {len(good) + k} of the "
                        rf"file\): b'\\xc3' \(unexpected end of data\)", msg), msg


@pytest.mark.parametrize("value", ["abc", "1_000", "\u0663", " 3", "3 ", "+-1", "1e3"])
def test_criteo_non_numeric_integer_feature(value, tmp_path):
    """Non-integer dense values (``int()`` would take "1_000", " 3" and the Arabic-Indic digit three)."""
    line = _line().replace("\t3\t", f"\t{value}\t", 1)
    msg, _, path = _read_bad(tmp_path, (_line() + line).encode())
    assert msg == f"{tmp_path / 'day_0.txt'} line 2, field I3: expected an integer, found {value!r}"


@pytest.mark.parametrize("label", ["2", "", "1.0", " 1", "-0", "yes"])
def test_criteo_bad_label(label, tmp_path):
    line = label + _line()[1:]
    msg, _, path = _read_bad(tmp_path, (_line() * 2 + line).encode())
    assert msg == f"{tmp_path / 'day_0.txt'} line 3, field label: expected 0 or 1, found {label!r}"


@pytest.mark.parametrize("value", ["zz000000", "0x1f", "-1f", "12 ", "\u0661\u0662", "ab.cd"])
def test_criteo_hex_ids_that_are_not_hex(value, tmp_path):
    line = _line(cat0=0).replace("00000000", value, 1)
    msg, _, path = _read_bad(tmp_path, line.encode())
    assert msg == f"{tmp_path / 'day_0.txt'} line 1, field C1: expected a hexadecimal value, found {value!r}"


def test_criteo_empty_file_and_bad_arguments(tmp_path):
    msg, _, path = _read_bad(tmp_path, b"", name="empty.txt")
    assert re.fullmatch(rf"{path}: empty file, expected lines of 40 tab-separated fields", msg), msg
    p = tmp_path / "ok.txt"
    p.write_text(_line())
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        list(read_criteo(p, CRITEO, batch_size=0))
    with pytest.raises(ValueError, match="max_rows must be >= 1"):
        list(read_criteo(p, CRITEO, batch_size=2, max_rows=0))
    assert [b.batch_size for b in read_criteo(p, CRITEO, batch_size=2)] == [1]


def test_check_ids_bounds_int32_and_empty(schema):
    """The stages' vectorised check on its own: int32 IDs, the exact bounds, an empty batch."""
    from repro.picasso.data import check_ids

    hi = torch.tensor(schema.vocab) - 1
    fi = torch.tensor([0, 0, 3, 29])
    ok = torch.tensor([0, schema.vocab[0] - 1, 5 % schema.vocab[3], schema.vocab[29] - 1], dtype=torch.int32)
    check_ids(ok, fi, hi, schema)
    check_ids(torch.empty(0, dtype=torch.int64), fi[:0], hi, schema)
    bad = ok.clone()
    bad[3] = schema.vocab[29]
    with pytest.raises(BatchError, match=rf"^field C30 \(index 29\): ID {schema.vocab[29]} is outside its valid "
                                         rf"range \[0, {schema.vocab[29]}\)$"):
        check_ids(bad, fi, hi, schema)
    bad[1] = -(2**31)
    with pytest.raises(BatchError, match=r"^field C1 \(index 0\): ID -2147483648 .* \(2 IDs out of range"):
        check_ids(bad, fi, hi, schema)
