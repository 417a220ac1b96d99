"""Tests of repro.victor (notebook 06, VICTOR): the memory queues and the momentum key copy, the proxy tasks'
corruptions and losses against plain formulas, the queue discipline of one pre-training step, the rendered
videos and the real-corpus loader, recall@k, the argument checks, and the smoke sweep end to end.

Everything runs on the ``smoke`` data profile with networks of width 16 and one layer per Transformer."""

import csv
import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro import runs
from repro.victor import data as vd
from repro.victor import pretrain as pt
from repro.victor import tasks as tk
from repro.victor.data import SPECIALS, Pairs, VideoDataError, Vocab, load_pairs
from repro.victor.model import FrameEncoder, MemoryQueue, VictorConfig, VictorNet, key_copy, momentum_update
from repro.victor.pretrain import TASK_SETS, PretrainConfig, recall_at_k, step_losses
from repro.victor.sweep import SMOKE, VictorRun, smoke_sweep

N_SPECIAL = len(SPECIALS)


def names(param: str) -> str:
    """A regex matching ``param`` as a whole word (so ``m`` does not match ``momentum``)."""
    return rf"(?<![\w]){re.escape(param)}(?![\w])"


def tiny_config(vocab_size: int, **kw) -> VictorConfig:
    base = dict(vocab_size=vocab_size, context=64, d_model=16, n_head=2, d_ff=32, n_text=1, n_video=1, n_cross=1,
                d_proj=16)
    return VictorConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def smoke_train() -> Pairs:
    return vd.load_split("train", "smoke")


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return vd.load_vocab("smoke")


@pytest.fixture(scope="module")
def splits() -> dict[str, Pairs]:
    return {s: vd.make_split(s, "smoke") for s in vd.SPLITS}


# ------------------------------------------------------------------------------------------------ MemoryQueue
def rows(*values: float, dim: int = 3) -> torch.Tensor:
    """Key vectors whose every entry is the row's value: row ``v`` is ``[v, v, v]``."""
    return torch.tensor(values, dtype=torch.float32)[:, None].expand(-1, dim).clone()


def held(q: MemoryQueue) -> list[float]:
    k = q.keys
    assert torch.equal(k, k[:, :1].expand_as(k))  # every row still one value repeated
    return k[:, 0].tolist()


def test_queue_is_fifo_and_wraps_around():
    q = MemoryQueue(5, 3)
    assert q.keys.shape == (0, 3)  # a new queue holds nothing
    q.enqueue(rows(0, 1, 2))
    assert held(q) == [0, 1, 2]
    q.enqueue(rows(3, 4, 5))  # 5 overwrites the oldest, 0
    assert held(q) == [5, 1, 2, 3, 4]
    q.enqueue(rows(6, 7))  # then 1 and 2 go
    assert held(q) == [5, 6, 7, 3, 4]
    q.enqueue(rows(8, 9, 10, 11, 12))  # a full batch replaces everything
    assert sorted(held(q)) == [8, 9, 10, 11, 12]
    q.enqueue(rows(13))
    assert sorted(held(q)) == [9, 10, 11, 12, 13]  # 8, the oldest, is the one gone


def test_queue_keys_grow_to_size_then_stay():
    q = MemoryQueue(7, 2)
    counts = []
    for i in range(6):
        q.enqueue(torch.full((3, 2), float(i)))
        counts.append(len(q.keys))
    assert counts == [3, 6, 7, 7, 7, 7]
    assert sorted(q.keys[:, 0].tolist()) == [3, 4, 4, 4, 5, 5, 5]  # the 7 newest of 18 keys


def test_queue_keys_are_a_copy():
    q = MemoryQueue(4, 2)
    q.enqueue(rows(1, 2, dim=2))
    got = q.keys
    q.enqueue(rows(3, 4, 5, dim=2))  # overwrites row 0
    q.buffer.add_(100.0)
    assert got.tolist() == [[1, 1], [2, 2]]
    got.mul_(0)  # and writing into what was read leaves the queue alone
    assert held(q) == [105, 102, 103, 104]


def test_queue_detaches_what_it_holds():
    q = MemoryQueue(4, 2)
    x = torch.ones(2, 2, requires_grad=True)
    q.enqueue(x * 2)
    assert not q.keys.requires_grad


@pytest.mark.parametrize("size,dim,batch,param", [(4, 3, (5, 3), "keys"), (4, 3, (2, 4), "keys"),
                                                  (4, 3, (2, 3, 1), "keys")])
def test_queue_refuses_bad_batches(size, dim, batch, param):
    q = MemoryQueue(size, dim)
    with pytest.raises(ValueError, match=names(param)):
        q.enqueue(torch.zeros(batch))
    assert len(q.keys) == 0


@pytest.mark.parametrize("size,dim,param", [(0, 3, "size"), (-1, 3, "size"), (True, 3, "size"), (2.0, 3, "size"),
                                            (4, 0, "dim")])
def test_queue_refuses_bad_sizes(size, dim, param):
    with pytest.raises(ValueError, match=names(param)):
        MemoryQueue(size, dim)


# ------------------------------------------------------------------------------------------ momentum, key copy
def two_nets(seed: int = 0) -> tuple[VictorNet, VictorNet]:
    torch.manual_seed(seed)
    q = VictorNet(tiny_config(30, context=16))
    k = key_copy(q)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        for p in q.parameters():  # the query moves away from its copy
            p.add_(torch.randn_like(p))
    return q, k


def test_key_copy_takes_no_gradients_and_starts_equal():
    torch.manual_seed(0)
    q = VictorNet(tiny_config(30, context=16))
    k = key_copy(q)
    assert all(p.requires_grad for p in q.parameters())
    assert not any(p.requires_grad for p in k.parameters())
    for pq, pk in zip(q.parameters(), k.parameters(), strict=True):
        assert torch.equal(pq, pk) and pq.data_ptr() != pk.data_ptr()


@pytest.mark.parametrize("m", [0.0, 0.3, 0.9, 1.0])
def test_momentum_update_is_the_convex_combination(m):
    q, k = two_nets()
    old_k = [p.clone() for p in k.parameters()]
    old_q = [p.clone() for p in q.parameters()]
    momentum_update(q, k, m)
    for pk, ok, pq in zip(k.parameters(), old_k, old_q, strict=True):
        assert torch.allclose(pk, m * ok + (1 - m) * pq, atol=1e-6)
    for pq, oq in zip(q.parameters(), old_q, strict=True):
        assert torch.equal(pq, oq)  # the query network is not touched
    if m == 0.0:
        assert all(torch.equal(pk, pq) for pk, pq in zip(k.parameters(), q.parameters(), strict=True))
    if m == 1.0:
        assert all(torch.equal(pk, ok) for pk, ok in zip(k.parameters(), old_k, strict=True))


@pytest.mark.parametrize("m", [-0.1, 1.5, float("nan")])
def test_momentum_outside_unit_interval_is_refused(m):
    q, k = two_nets()
    with pytest.raises(ValueError, match=names("m")):
        momentum_update(q, k, m)


# -------------------------------------------------------------------------------------------------- InfoNCE
def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def plain_nce(q, k_pos, negs, tau):
    """Cross-entropy of ``[q.k+, q.n_1, ...] / tau`` with target 0, row by row; ``negs[i]`` ``(M, d)``."""
    losses = []
    for i in range(len(q)):
        logits = torch.cat([(q[i] * k_pos[i]).sum()[None], negs[i] @ q[i]]) / tau
        losses.append(-torch.log_softmax(logits, 0)[0])
    return torch.stack(losses).mean()


@pytest.mark.parametrize("tau", [0.07, 1.0])
def test_info_nce_is_cross_entropy_with_target_zero(tau):
    q, kp = unit(6, 8, seed=1), unit(6, 8, seed=2)
    shared, own = unit(11, 8, seed=3), unit(6, 5, 8, seed=4)
    got = tk.info_nce(q, kp, shared, tau)
    want = F.cross_entropy(torch.cat([(q * kp).sum(1, keepdim=True), q @ shared.T], 1) / tau,
                           torch.zeros(6, dtype=torch.long))
    assert torch.allclose(got, want)
    assert torch.allclose(got, plain_nce(q, kp, [shared] * 6, tau))
    assert torch.allclose(tk.info_nce(q, kp, own, tau), plain_nce(q, kp, own, tau))
    assert torch.allclose(tk.info_nce(q, kp, None, tau), torch.zeros((), dtype=torch.float64))  # only the positive
    assert torch.allclose(tk.info_nce(q, kp, shared[:0], tau), torch.zeros((), dtype=torch.float64))  # empty queue


def test_info_nce_falls_as_the_positive_gets_closer():
    q, neg = unit(4, 8, seed=1), unit(9, 8, seed=3)
    far, near = unit(4, 8, seed=5), F.normalize(q + 0.01 * unit(4, 8, seed=6), dim=-1)
    assert tk.info_nce(q, near, neg, 0.1) < tk.info_nce(q, far, neg, 0.1)


@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_info_nce_refuses_nonpositive_tau(tau):
    with pytest.raises(ValueError, match=names("tau")):
        tk.info_nce(unit(2, 4), unit(2, 4), None, tau)
    with pytest.raises(ValueError, match=names("tau")):
        tk.dual_vsa_loss(unit(2, 4), unit(2, 4), unit(2, 4), unit(2, 4), unit(3, 4), unit(3, 4), tau)


@pytest.mark.parametrize("K", [0, 7])
def test_dual_vsa_is_the_mean_of_both_directions_against_batch_and_queue(K):
    B, d, tau = 5, 8, 0.07
    tq, vq, tk_, vk = (unit(B, d, seed=s) for s in (1, 2, 3, 4))
    vis, txt = unit(K, d, seed=5), unit(K, d, seed=6)

    def negatives(keys, queue):  # each query's own: the other rows' keys, then the queue
        return torch.stack([torch.cat([keys[[j for j in range(B) if j != i]], queue]) for i in range(B)])

    t2v = tk.info_nce(tq, vk, negatives(vk, vis), tau)
    v2t = tk.info_nce(vq, tk_, negatives(tk_, txt), tau)
    got = tk.dual_vsa_loss(tq, vq, tk_, vk, vis, txt, tau)
    assert torch.allclose(got, 0.5 * (t2v + v2t))
    # the queues are not interchangeable: the visual one holds the negatives of text-to-video
    if K:
        assert not torch.allclose(got, tk.dual_vsa_loss(tq, vq, tk_, vk, txt, vis, tau))


# -------------------------------------------------------------------------------- one step's queue discipline
def test_a_step_reads_the_queues_before_enqueueing_its_own_keys(monkeypatch, smoke_train, vocab):
    """Each loss sees only earlier batches' keys; after the step the batch's keys are in the queues."""
    B = 4
    a_rows, b_rows = np.arange(0, B), np.arange(B, 2 * B)
    assert len({smoke_train.captions[i] for i in range(2 * B)}) == 2 * B  # distinct pairs: distinct keys
    ids = torch.from_numpy(vocab.encode(smoke_train.captions, 64))
    frames = torch.from_numpy(smoke_train.frames)
    cfg = PretrainConfig(tasks=TASK_SETS["all"], steps=2, batch_size=B, warmup_steps=0, frames_queue=128,
                         visual_queue=16, textual_queue=16)
    torch.manual_seed(0)
    net = VictorNet(tiny_config(len(vocab)), vocab.pad)
    key = key_copy(net)
    with torch.no_grad():  # the key network differs from the query network, as after some training
        for p in key.parameters():
            p.add_(0.05 * torch.randn_like(p))
    queues = {"frames": MemoryQueue(128, 16), "visual": MemoryQueue(16, 16), "textual": MemoryQueue(16, 16)}
    seen: dict[str, list[torch.Tensor]] = {"visual": [], "textual": [], "frames": []}
    vsa, mfm = tk.dual_vsa_loss, tk.inter_mfm_loss

    def spy_vsa(text_q, video_q, text_k, video_k, visual_queue, textual_queue, tau):
        seen["visual"].append(visual_queue.clone())
        seen["textual"].append(textual_queue.clone())
        return vsa(text_q, video_q, text_k, video_k, visual_queue, textual_queue, tau)

    def spy_mfm(pred, key_frames, frames_queue, tau):
        seen["frames"].append(frames_queue.clone())
        return mfm(pred, key_frames, frames_queue, tau)

    monkeypatch.setattr(pt.tk, "dual_vsa_loss", spy_vsa)
    monkeypatch.setattr(pt.tk, "inter_mfm_loss", spy_mfm)

    @torch.no_grad()
    def key_features(r):
        enc = key.encode(frames[r], ids[r])
        t, v = key.embed(enc)
        _, fv = key.fuse(enc.text, enc.video, enc.pad)
        return {"textual": t, "visual": v, "frames": F.normalize(key.mfm(fv), dim=-1).flatten(0, 1)}

    def holds(queue: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """For each row of ``x``: whether the queue holds it."""
        if len(queue) == 0:
            return torch.zeros(len(x), dtype=torch.bool)
        return torch.stack([torch.isclose(queue, r, atol=1e-5).all(1).any() for r in x])

    gen = torch.Generator().manual_seed(0)
    ka, kb = key_features(a_rows), key_features(b_rows)
    for name in ("visual", "textual", "frames"):  # the two batches' keys are apart
        assert not holds(ka[name], kb[name]).any()

    ra, rb = torch.as_tensor(np.asarray(a_rows)), torch.as_tensor(np.asarray(b_rows))
    losses = step_losses(net, key, queues, frames[a_rows], ids[a_rows], vocab, cfg, gen, ra)
    assert set(losses) == set(cfg.tasks)
    for name in ("visual", "textual", "frames"):
        assert seen[name][0].shape[0] == 0  # the first step read empty queues
        assert holds(queues[name].keys, ka[name]).all()  # and enqueued batch A's keys after
        assert len(queues[name].keys) == len(ka[name])

    step_losses(net, key, queues, frames[b_rows], ids[b_rows], vocab, cfg, gen, rb)
    for name in ("visual", "textual", "frames"):
        read = seen[name][1]
        assert holds(read, ka[name]).all()  # the second step read batch A's keys ...
        assert not holds(read, kb[name]).any()  # ... and none of its own positives
        assert holds(queues[name].keys, kb[name]).all()  # which it enqueued afterwards

    step_losses(net, key, queues, frames[a_rows], ids[a_rows], vocab, cfg, gen, ra)  # batch A again: a new epoch
    for name in ("visual", "textual", "frames"):
        read = seen[name][2]
        assert holds(queues[name].keys[:0], ka[name]).sum() == 0
        assert holds(read, kb[name]).all()  # the other batch's keys are negatives ...
        assert not holds(read, ka[name]).any()  # ... A's own keys from its last visit are not


# ------------------------------------------------------------------------------------------------- masking
def caption_batch(n: int, length: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """``[CLS] c_1 .. c_m [SEP] [PAD] ..`` rows (m from 20 to length - 2) with a few ``[UNK]`` among the characters."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, length, dtype=torch.long)
    m = torch.randint(20, length - 1, (n,), generator=g)
    for i, mi in enumerate(m.tolist()):
        body = torch.randint(N_SPECIAL, vocab_size, (mi,), generator=g)
        body[torch.rand(mi, generator=g) < 0.03] = 4  # [UNK]
        ids[i, 0], ids[i, 1:mi + 1], ids[i, mi + 1] = 1, body, 2
    return ids


def test_mask_tokens_chooses_rate_of_real_tokens_bert_style():
    V, rate = 40, 0.15
    ids = caption_batch(2000, 60, V)
    out, labels = tk.mask_tokens(ids, rate, 3, V, N_SPECIAL, torch.Generator().manual_seed(1))
    real = ids >= N_SPECIAL
    chosen = labels != -100
    assert not (chosen & ~real).any()  # never a special token ([CLS], [SEP], [PAD], [UNK])
    assert torch.equal(out[~chosen], ids[~chosen])  # what is not chosen is not touched
    assert torch.equal(labels[chosen], ids[chosen])
    assert chosen.any(1).all()
    assert abs(chosen.sum().item() / real.sum().item() - rate) < 0.01
    n = chosen.sum().item()
    as_mask = (out[chosen] == 3).sum().item() / n
    kept = (out[chosen] == ids[chosen]).sum().item() / n
    random = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.03 and abs(random - 0.1) < 0.03
    assert (out[chosen & (out != 3)] >= N_SPECIAL).all()  # a random replacement is a character


def test_mask_tokens_gives_every_caption_a_chosen_token():
    ids = caption_batch(300, 24, 40)
    _, labels = tk.mask_tokens(ids, 0.01, 3, 40, N_SPECIAL, torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.any(1).all()
    assert (chosen.sum(1) == 1).float().mean() > 0.5  # at rate 0.01 most rows hold just the one forced token


def test_mask_tokens_never_chooses_a_special_token_even_in_an_empty_caption():
    ids = torch.tensor([[1, 2, 0, 0, 0], [1, 7, 8, 9, 2]])  # "" and a three-character caption
    out, labels = tk.mask_tokens(ids, 0.5, 3, 20, N_SPECIAL, torch.Generator().manual_seed(0))
    assert (labels[ids < N_SPECIAL] == -100).all()
    assert torch.equal(out[0], ids[0])


@pytest.mark.parametrize("T,rate", [(12, 0.15), (12, 0.5), (12, 0.01), (7, 0.3), (30, 0.99)])
def test_mask_frames_masks_exactly_k_per_video_uniformly(T, rate):
    m = tk.mask_frames(3000, T, rate, torch.Generator().manual_seed(0))
    k = max(1, round(rate * T))
    assert m.shape == (3000, T) and m.dtype == torch.bool
    assert (m.sum(1) == k).all()
    assert torch.allclose(m.float().mean(0), torch.full((T,), k / T), atol=0.04)  # every frame alike


@pytest.mark.parametrize("rate", [0, 1, 0.0, 1.0, -0.1, 1.5, True, float("nan"), "0.1"])
def test_mask_rates_outside_the_open_interval_are_refused(rate):
    with pytest.raises(ValueError, match=names("rate")):
        tk.mask_tokens(caption_batch(2, 24, 40), rate, 3, 40, N_SPECIAL)
    with pytest.raises(ValueError, match=names("rate")):
        tk.mask_frames(2, 12, rate)


# ---------------------------------------------------------------------------------------------- order tasks
def unshuffle(row: list[int], label: int, sep: int) -> list[int]:
    """The caption's tokens put back in order: the ``j``-th segment of ``row`` is ``PERMUTATIONS[label][j]``."""
    body = row[1:]
    cuts = [i for i, x in enumerate(body) if x == sep]
    assert len(cuts) == 3
    segs = [body[:cuts[0]], body[cuts[0] + 1:cuts[1]], body[cuts[1] + 1:cuts[2]]]
    orig: list[list[int]] = [[], [], []]
    for j, s in enumerate(tk.PERMUTATIONS[label]):
        orig[s] = segs[j]
    assert max(map(len, orig)) - min(map(len, orig)) <= 1  # near-equal thirds
    return orig[0] + orig[1] + orig[2]


def test_shuffle_segments_labels_the_permutation_applied(smoke_train, vocab):
    ids = torch.from_numpy(vocab.encode(smoke_train.captions, 64))
    out, labels = tk.shuffle_segments(ids, vocab.sep, vocab.pad, torch.Generator().manual_seed(0))
    assert out.shape == ids.shape and labels.shape == (len(ids),)
    assert set(labels.tolist()) == set(range(6))  # 256 draws: every order occurs
    assert (labels != 0).sum() > 150  # and mostly not the identity
    for b in range(len(ids)):
        n = len(smoke_train.captions[b])
        row = out[b].tolist()
        assert row[0] == vocab.cls
        assert row[n + 4:] == [vocab.pad] * (64 - n - 4)  # [CLS] seg [SEP] seg [SEP] seg [SEP], then padding
        assert row[n + 3] == vocab.sep and row[:n + 4].count(vocab.sep) == 3 and vocab.pad not in row[:n + 4]
        assert unshuffle(row[:n + 4], int(labels[b]), vocab.sep) == ids[b, 1:n + 1].tolist()


@pytest.mark.parametrize("special", ["mask", "unk"])
def test_shuffle_segments_keeps_every_token_of_a_masked_caption(special, smoke_train, vocab):
    ids = torch.from_numpy(vocab.encode(smoke_train.captions[:32], 64))
    if special == "mask":  # what step_losses does: MSOM reads the masked caption
        x, _ = tk.mask_tokens(ids, 0.15, vocab.mask, len(vocab), N_SPECIAL, torch.Generator().manual_seed(0))
    else:
        x = ids.clone()
        x[:, 3] = vocab.unk  # a character the vocabulary does not know
    out, labels = tk.shuffle_segments(x, vocab.sep, vocab.pad, torch.Generator().manual_seed(1))
    for b in range(len(x)):
        n = len(smoke_train.captions[b])
        assert unshuffle(out[b, :n + 4].tolist(), int(labels[b]), vocab.sep) == x[b, 1:n + 1].tolist()


def test_shuffle_segments_refuses_a_caption_too_long_for_its_separators():
    ids = torch.tensor([[1] + [7] * 10 + [2]])  # 10 characters need 14 positions
    with pytest.raises(ValueError, match=names("ids")):
        tk.shuffle_segments(ids, 2)
    out, _ = tk.shuffle_segments(torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1), 2)
    assert (out == 2).sum() == 3


@pytest.mark.parametrize("shape", [(50, 12, 3, 4, 4), (40, 6, 5), (30, 3)])
def test_shuffle_frames_labels_the_permutation_applied(shape):
    frames = torch.arange(int(np.prod(shape))).reshape(shape)
    out, labels = tk.shuffle_frames(frames, torch.Generator().manual_seed(0))
    B, T = shape[:2]
    s = T // 3
    assert out.shape == frames.shape and set(labels.tolist()) == set(range(6))
    for b in range(B):
        perm = tk.PERMUTATIONS[int(labels[b])]
        back = torch.empty_like(out[b])
        for j, src in enumerate(perm):  # output segment j is input segment perm[j]
            back[src * s:(src + 1) * s] = out[b, j * s:(j + 1) * s]
        assert torch.equal(back, frames[b])


@pytest.mark.parametrize("T", [4, 11, 13])
def test_shuffle_frames_refuses_frames_not_in_thirds(T):
    with pytest.raises(ValueError, match=names("frames")):
        tk.shuffle_frames(torch.zeros(2, T, 3))


# -------------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("field,value", [("visual_queue", 16), ("textual_queue", 31), ("text_mask_rate", 0.0),
                                         ("text_mask_rate", 1.0), ("frame_mask_rate", -0.2), ("frame_mask_rate", 1.5),
                                         ("order_share", 0), ("momentum", 1.5), ("momentum", -0.1), ("tau", 0),
                                         ("tau", -1.0), ("tau", float("inf")), ("tasks", ("mlm", "itm")),
                                         ("tasks", ("vsa",)), ("tasks", ()), ("steps", 0), ("batch_size", 0),
                                         ("warmup_steps", 2000), ("lr", 0.0), ("device", "tpu"),
                                         ("frames_queue", 0), ("log_every", True)])
def test_bad_pretrain_configs_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=names(field)):
        PretrainConfig(**{"batch_size": 32, field: value})


def test_pretrain_config_accepts_queues_of_exactly_one_batch():
    cfg = PretrainConfig(batch_size=8, visual_queue=8, textual_queue=8)
    assert cfg.has("vsa") and not PretrainConfig(tasks=("mlm",)).has("vsa", "inter_mfm")


def test_pretrain_refuses_a_frames_queue_smaller_than_one_step(smoke_train, vocab):
    cfg = PretrainConfig(tasks=TASK_SETS["mlm+vsa+mfm"], steps=1, batch_size=4, warmup_steps=0, frames_queue=47,
                         visual_queue=4, textual_queue=4)
    with pytest.raises(ValueError, match=names("frames_queue")):
        pt.pretrain(smoke_train, vocab, tiny_config(len(vocab)), cfg)
    # without inter-MFM no frame keys are enqueued, so a small frames queue is fine
    net, curve, _ = pt.pretrain(smoke_train, vocab, tiny_config(len(vocab)),
                                dataclasses.replace(cfg, tasks=TASK_SETS["mlm+vsa"]))
    assert set(curve[-1]) == {"step", "mlm", "vsa"}


@pytest.mark.parametrize("shape", [(2, 12, 3, 16, 16), (2, 11, 3, 32, 32), (2, 12, 1, 32, 32), (2, 12, 64)])
def test_frames_of_the_wrong_shape_are_refused(shape):
    net = VictorNet(tiny_config(30, context=16))
    with pytest.raises(ValueError, match=names("frames")):
        net.encode(torch.zeros(shape, dtype=torch.uint8), torch.ones(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=names("frames")):
        net.frame_encoder(torch.zeros(shape, dtype=torch.uint8))
    feats = FrameEncoder(tiny_config(30, frame_features=8))
    with pytest.raises(ValueError, match=names("frames")):
        feats(torch.zeros(shape))


def test_ids_of_the_wrong_shape_or_batch_are_refused():
    net = VictorNet(tiny_config(30, context=16))
    frames = torch.zeros(2, 12, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match=names("ids")):
        net.encode(frames, torch.ones(2, 17, dtype=torch.long))  # longer than the context
    with pytest.raises(ValueError, match=names("ids")):
        net.encode(frames, torch.ones(3, 8, dtype=torch.long))


@pytest.mark.parametrize("field,value", [("n_head", 3), ("d_model", 0), ("vocab_size", 0), ("frame_size", 12),
                                         ("frame_features", -1), ("dropout", 1.0), ("context", True)])
def test_bad_victor_configs_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=names(field)):
        VictorConfig(**{"vocab_size": 30, "d_model": 16, "n_head": 2, field: value})


@pytest.mark.parametrize("field,value", [("config", "mlm+itm"), ("data_profile", "full"), ("seed", -1),
                                         ("queue", 4), ("n_layer", 0), ("tau", 0.0)])
def test_bad_victor_runs_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=names(field)):
        VictorRun(**{"config": "mlm", field: value})


def test_vocab_encode_refuses_a_caption_longer_than_the_context(vocab):
    cap = "先红色方块向右移动"
    assert vocab.encode([cap], len(cap) + 2).shape == (1, len(cap) + 2)
    with pytest.raises(ValueError, match=names("context")):
        vocab.encode([cap], len(cap) + 1)


# --------------------------------------------------------------------------------------------------- data
def test_make_split_is_deterministic_and_matches_the_built_files(splits, smoke_train):
    again = vd.make_split("train", "smoke")
    first = splits["train"]
    assert np.array_equal(first.frames, again.frames) and first.captions == again.captions
    assert np.array_equal(first.events, again.events)
    assert np.array_equal(smoke_train.frames, first.frames) and smoke_train.captions == first.captions


def test_splits_have_the_documented_shapes(splits):
    for name, p in splits.items():
        want = vd.SIZES["smoke"]["train" if name == "train" else "heldout" if name == "heldout" else "queries"]
        n = want * (4 if name in ("hard", "random") else 1)
        assert p.frames.shape == (n, 12, 3, 32, 32) and p.frames.dtype == np.uint8, name
        assert len(p) == n and p.events.shape == (n, 4, 3) and p.n_events.shape == (n,)
        assert set(p.n_events.tolist()) <= {2, 3, 4}
        for i in range(n):  # events past n_events are padding
            assert (p.events[i, :p.n_events[i]] >= 0).all() and (p.events[i, p.n_events[i]:] == -1).all()
        assert set(p.category.tolist()) <= set(range(len(vd.ACTIONS)))
    assert set(splits["hard"].n_events.tolist()) <= {3, 4}


def clauses(cap: str, n: int) -> tuple[list[str], list[str]]:
    """A caption's order words and its clause bodies (object and action)."""
    assert cap.endswith("。")
    parts = cap[:-1].split("，")
    assert len(parts) == n, cap
    words, bodies = [], []
    for slot, part in zip(vd.ORDER_WORDS[n], parts, strict=True):
        w = max((w for w in slot if part.startswith(w)), key=len, default=None)
        assert w is not None, (cap, slot)
        words.append(w)
        bodies.append(part[len(w):])
    return words, bodies


def body(ev) -> str:
    """The object and action an event's clause names, without the phrase variant's particles."""
    shape, colour, action = (int(x) for x in ev)
    return list(vd.COLOURS.values())[colour][0] + list(vd.SHAPES.values())[shape] + list(vd.ACTIONS.values())[action]


def plain(b: str) -> str:
    return b.removeprefix("一个").replace("色的", "").replace("色", "")


def test_captions_name_the_events_in_order_with_order_words(splits):
    for p in splits.values():
        for cap, ev, n in zip(p.captions, p.events, p.n_events, strict=True):
            words, bodies = clauses(cap, int(n))
            assert words[0] in ("先", "首先")
            if n >= 3:
                assert words[-1] == "最后"
            assert [plain(b) for b in bodies] == [body(e) for e in ev[:n]]


def blocks(x: np.ndarray) -> np.ndarray:
    """Frames ``(n, 3, 32, 32)`` averaged over 4 x 4 pixel blocks (so the per-frame noise mostly cancels)."""
    return x.astype(float).reshape(len(x), 3, 8, 4, 8, 4).mean((3, 5))


def test_hard_candidates_are_reorderings_of_their_query(splits):
    h = splits["hard"]
    assert np.array_equal(h.query, np.repeat(np.arange(0, len(h), 4), 4))
    assert np.array_equal(h.queries, np.arange(0, len(h), 4))
    for q in h.queries:
        n = int(h.n_events[q])
        span = 12 // n
        q_events = [tuple(e) for e in h.events[q, :n]]
        q_words, q_bodies = clauses(h.captions[q], n)
        orders = set()
        for c in range(q + 1, q + 4):
            c_events = [tuple(e) for e in h.events[c, :n]]
            assert h.n_events[c] == n and sorted(c_events) == sorted(q_events)
            assert c_events != q_events
            orders.add(tuple(c_events))
            perm = [q_events.index(e) for e in c_events]  # candidate slot j shows the query's event perm[j]
            words, bodies = clauses(h.captions[c], n)  # same order words, the clauses reordered
            assert words == q_words and bodies == [q_bodies[k] for k in perm]
            qs = [blocks(h.frames[q, k * span:(k + 1) * span]) for k in range(n)]
            for j, k in enumerate(perm):
                seg = h.frames[c, j * span:(j + 1) * span]
                if k == j:  # the same event in the same slot: the same pixels (same background and noise)
                    assert np.array_equal(seg, h.frames[q, j * span:(j + 1) * span])
                else:
                    assert not np.array_equal(seg, h.frames[q, j * span:(j + 1) * span])
                dist = [np.abs(blocks(seg) - x).mean() for x in qs]
                assert int(np.argmin(dist)) == k, (c, j, dist)
        assert len(orders) == 3  # three different reorderings


def test_hard_and_random_galleries_share_their_queries(splits):
    h, r = splits["hard"], splits["random"]
    assert np.array_equal(h.queries, r.queries) and np.array_equal(h.query, r.query)
    q = h.queries
    assert np.array_equal(h.frames[q], r.frames[q]) and [h.captions[i] for i in q] == [r.captions[i] for i in q]
    assert np.array_equal(h.events[q], r.events[q])
    others = np.setdiff1d(np.arange(len(r)), q)
    for i in others:  # a random candidate is a fresh pair, not a reordering of its query
        q_seq = sequences(r.events[[r.query[i]]], r.n_events[[r.query[i]]])[0]
        assert sorted(sequences(r.events[[i]], r.n_events[[i]])[0]) != sorted(q_seq)
        assert r.n_events[i] in (3, 4)


def sequences(p_events: np.ndarray, n_events: np.ndarray) -> list[tuple]:
    return [tuple(map(tuple, e[:n])) for e, n in zip(p_events, n_events, strict=True)]


def test_gallery_event_sequences_never_occur_in_training(splits):
    train = set(sequences(splits["train"].events, splits["train"].n_events))
    for name in ("heldout", "hard", "random"):
        seqs = sequences(splits[name].events, splits[name].n_events)
        assert not train & set(seqs), name
    held = sequences(splits["heldout"].events, splits["heldout"].n_events)
    assert len(set(held)) == len(held)


def test_full_profile_galleries_never_repeat_a_training_sequence():
    """The same on the built full profile (its events arrays only: cheap to read)."""
    folder = vd.ROOT / "full"
    if not (folder / "train.npz").exists():
        pytest.skip("the full video profile is not built")

    def read(split):
        with np.load(folder / f"{split}.npz", allow_pickle=False) as z:
            return sequences(z["events"], z["n_events"])

    train = set(read("train"))
    assert len(train) > 5000
    for name in ("heldout", "hard", "random"):
        assert not train & set(read(name)), name


def test_vocab_round_trips_training_captions(smoke_train, vocab):
    ids = vocab.encode(smoke_train.captions, 64)
    assert ids.dtype == np.int64 and (ids[:, 0] == vocab.cls).all()
    assert [vocab.decode(r) for r in ids] == smoke_train.captions
    assert vocab.itos[:N_SPECIAL] == list(SPECIALS) and vocab.unk not in ids
    assert Vocab.from_json(vocab.to_json()).itos == vocab.itos
    assert vocab.encode(["先X"], 8)[0, 2] == vocab.unk  # a character it does not know
    with pytest.raises(ValueError, match="special"):
        Vocab.from_json(json.dumps(["a", "b"]))


# ----------------------------------------------------------------------------------------- a real corpus
RECORDS = [{"video_id": "v1", "caption": "先红色方块出现"}, {"video_id": "v2", "caption": "然后蓝色十字旋转"},
           {"video_id": "v1", "caption": "最后一个白色的长条变大"}]


def write_captions(folder: Path, layout: str) -> str:
    if layout == "json":
        (folder / "captions.json").write_text(json.dumps(RECORDS, ensure_ascii=False), "utf-8")
        return "captions.json"
    if layout == "jsonl":
        (folder / "captions.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n\n",
                                               "utf-8")
        return "captions.jsonl"
    if layout == "csv":
        with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["video_id", "caption"])
            w.writeheader()
            w.writerows(RECORDS)
        return "captions.csv"
    sentences = [{**r, "sen_id": i} for i, r in enumerate(RECORDS)]  # UniVL's MSR-VTT style
    (folder / "train.json").write_text(json.dumps({"videos": [], "sentences": sentences}, ensure_ascii=False),
                                       "utf-8")
    return "train.json"


def pixel_video(F_: int, value_of_frame=lambda f: f) -> np.ndarray:
    """uint8 ``(F, 16, 16, 3)``: frame ``f`` filled with ``value_of_frame(f)``."""
    return np.stack([np.full((16, 16, 3), value_of_frame(f), dtype=np.uint8) for f in range(F_)])


@pytest.mark.parametrize("layout", ["json", "jsonl", "csv", "univl"])
def test_load_pairs_reads_pixel_videos_in_every_layout(tmp_path, layout):
    name = write_captions(tmp_path, layout)
    (tmp_path / "videos").mkdir()
    np.save(tmp_path / "videos" / "v1.npy", pixel_video(30))
    np.save(tmp_path / "videos" / "v2.npy", pixel_video(40, lambda f: 100 + f))
    p = load_pairs(tmp_path, name)
    assert p.frames.shape == (3, 12, 3, 16, 16) and p.frames.dtype == np.uint8
    assert p.captions == [r["caption"] for r in RECORDS] and p.ids == ["v1", "v2", "v1"]
    assert (p.events == -1).all() and np.array_equal(p.query, np.arange(3)) and len(p.queries) == 3
    picked = p.frames[:, :, 0, 0, 0].astype(int)  # the frame index each sample came from
    assert picked[0].tolist() == np.linspace(0, 29, 12).round().astype(int).tolist()
    assert picked[0, 0] == 0 and picked[0, -1] == 29 and picked[1, 0] == 100 and picked[1, -1] == 139
    assert (np.diff(picked, axis=1) > 0).all()  # evenly spread, in order
    assert np.array_equal(p.frames[0], p.frames[2])  # a video with two captions gives two pairs


def test_load_pairs_reads_features_and_a_network_encodes_them(tmp_path):
    D = 8
    name = write_captions(tmp_path, "jsonl")
    (tmp_path / "features").mkdir()
    rng = np.random.default_rng(0)
    for vid, F_ in (("v1", 12), ("v2", 25)):
        np.save(tmp_path / "features" / f"{vid}.npy", rng.normal(size=(F_, D)))
    p = load_pairs(tmp_path, name)
    assert p.frames.shape == (3, 12, D) and p.frames.dtype == np.float32
    assert np.array_equal(p.frames[0], np.load(tmp_path / "features" / "v1.npy").astype(np.float32))  # F = frames
    vocab = Vocab.from_captions(p.captions)
    net = VictorNet(tiny_config(len(vocab), context=16, frame_features=D), vocab.pad)
    enc = net.encode(torch.from_numpy(p.frames), torch.from_numpy(vocab.encode(p.captions, 16)))
    t, v = net.embed(enc)
    assert enc.video.shape == (3, 12, 16) and t.shape == v.shape == (3, 16)
    assert torch.isfinite(t).all() and torch.isfinite(v).all()
    assert torch.allclose(v[0], v[2]) and not torch.allclose(v[0], v[1])
    # and pre-training with every task runs on them (the order tasks shuffle feature frames too)
    cfg = PretrainConfig(tasks=TASK_SETS["all"], steps=2, batch_size=3, warmup_steps=0, frames_queue=36,
                         visual_queue=3, textual_queue=3, log_every=1)
    _, curve, _ = pt.pretrain(p, vocab, tiny_config(len(vocab), context=16, frame_features=D), cfg)
    assert [c["step"] for c in curve] == [1, 2] and all(np.isfinite(list(c.values())).all() for c in curve)


def test_load_pairs_reads_a_small_pixel_video_into_a_network(tmp_path):
    name = write_captions(tmp_path, "json")
    (tmp_path / "videos").mkdir()
    for vid in ("v1", "v2"):
        np.save(tmp_path / "videos" / f"{vid}.npy", np.random.default_rng(1).integers(0, 255, (20, 16, 16, 3),
                                                                                      dtype=np.uint8))
    p = load_pairs(tmp_path, name)
    vocab = Vocab.from_captions(p.captions)
    net = VictorNet(tiny_config(len(vocab), context=16, frame_size=16), vocab.pad)
    t, v = net.embed(net.encode(torch.from_numpy(p.frames), torch.from_numpy(vocab.encode(p.captions, 16))))
    assert t.shape == v.shape == (3, 16)


@pytest.mark.parametrize("case,match", [("missing", "v2"), ("gray", "shape"), ("rgba", "shape"),
                                        ("features3d", "shape"), ("short", "frames"), ("mixed", "mixes"),
                                        ("sizes", "size"), ("nofield", "video_id"), ("empty", "no pairs")])
def test_load_pairs_refuses_bad_corpora_naming_the_video(tmp_path, case, match):
    name = write_captions(tmp_path, "json")
    (tmp_path / "videos").mkdir()
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "videos" / "v1.npy", pixel_video(20))
    v2 = {"missing": None, "gray": np.zeros((20, 16, 16), np.uint8), "rgba": np.zeros((20, 16, 16, 4), np.uint8),
          "short": pixel_video(11), "sizes": np.zeros((20, 8, 8, 3), np.uint8)}.get(case, pixel_video(20))
    if case == "features3d":
        (tmp_path / "videos" / "v1.npy").unlink()
        np.save(tmp_path / "features" / "v1.npy", np.zeros((20, 4, 2)))
    if case == "mixed":
        np.save(tmp_path / "features" / "v2.npy", np.zeros((20, 4)))
    elif v2 is not None:
        np.save(tmp_path / "videos" / "v2.npy", v2)
    if case == "nofield":
        (tmp_path / name).write_text(json.dumps([{"video": "v1", "caption": "x"}]))
    if case == "empty":
        (tmp_path / name).write_text("[]")
    with pytest.raises(VideoDataError, match=match) as err:
        load_pairs(tmp_path, name)
    if case in ("missing", "gray", "rgba", "short"):
        assert "v2" in str(err.value)


# ---------------------------------------------------------------------------------------------- recall@k
def test_recall_at_k_on_known_score_matrices():
    G = 12
    assert recall_at_k(torch.eye(G), np.arange(G)) == {1: 1.0, 5: 1.0, 10: 1.0}
    worst = 1 - torch.eye(G)  # the match scores below every other candidate: rank G - 1 = 11
    assert recall_at_k(worst, np.arange(G)) == {1: 0.0, 5: 0.0, 10: 0.0}
    assert recall_at_k(worst, np.arange(G), ks=(11, 12)) == {11: 0.0, 12: 1.0}
    # query i's match ranks i-th (0-based): R@k = share of queries with i < k
    s = np.tile(np.arange(G, 0, -1, dtype=float), (G, 1))  # column j scores G - j for every query
    assert recall_at_k(s, np.arange(G)) == {1: 1 / G, 5: 5 / G, 10: 10 / G}
    # positives need not be on the diagonal (a gallery larger than its queries)
    s = np.zeros((2, 6))
    s[0, 4], s[1, 1], s[1, 5] = 1.0, 0.5, 0.9
    assert recall_at_k(s, [4, 1], ks=(1, 2)) == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize("G", [2, 5, 64])
def test_ties_count_against_the_query(G):
    r = recall_at_k(torch.ones(4, G), [0, 1, 1, G - 1], ks=(1, G - 1, G))
    assert r == {1: 0.0, G - 1: 0.0, G: 1.0}
    s = torch.eye(G)
    s[0, 1] = 1.0  # one candidate ties query 0's match
    assert recall_at_k(s, np.arange(G), ks=(1, 2))[1] == pytest.approx((G - 1) / G)
    assert recall_at_k(s, np.arange(G), ks=(1, 2))[2] == 1.0


def test_recall_at_k_refuses_mismatched_positives():
    with pytest.raises(ValueError, match=names("scores")):
        recall_at_k(torch.eye(3), [0, 1])


# ------------------------------------------------------------------------------------------- the smoke sweep
@pytest.fixture(scope="module")
def smoke_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("victor")
    sw = smoke_sweep(folder)
    table = runs.run_sweep(sw, jobs=1, progress=False, log=lambda s: None)
    return sw, table


def test_smoke_sweep_runs_every_configuration(smoke_table):
    sw, table = smoke_table
    assert not table.meta.get("failed")
    assert table.done() == set(sw.ids())
    specs = [r for r in sw.specs]
    assert {r.config for r in specs} == set(TASK_SETS)
    assert sorted(r.queue for r in specs if r.config == "mlm+vsa") == [8, 16, 64]
    assert all(r.data_profile == "smoke" for r in specs)
    assert sorted(r.steps for r in specs if r.config == "mlm") == [SMOKE["steps"], 18]  # and MLM at more compute
    assert all(r.steps == SMOKE["steps"] for r in specs if r.config != "mlm")


def test_smoke_sweep_rows_hold_each_runs_tasks_and_evaluations(smoke_table):
    sw, table = smoke_table
    spec_of = dict(zip(sw.ids(), sw.specs, strict=True))
    by_run: dict[str, list[dict]] = {}
    for r in table.rows:
        by_run.setdefault(r["run"], []).append(r)
    assert set(by_run) == set(spec_of)
    for rid, rs in by_run.items():
        spec = spec_of[rid]
        log_steps = sorted(set(range(SMOKE["log_every"], spec.steps + 1, SMOKE["log_every"])) | {spec.steps})
        kinds = Counter(r["kind"] for r in rs)
        assert set(kinds) == {"loss", "retrieval", "probe", "cost"}, rid
        assert all(r["config"] == spec.config and r["queue"] == spec.queue for r in rs)
        loss = [r for r in rs if r["kind"] == "loss"]
        assert {r["task"] for r in loss} == set(TASK_SETS[spec.config]), rid
        assert sorted((r["step"], r["task"]) for r in loss) == sorted(
            (s, t) for s in log_steps for t in TASK_SETS[spec.config])
        assert all(np.isfinite(r["value"]) and r["value"] >= 0 for r in loss)
        scorings = ("cosine", "linear") + (("head",) if spec.config == "mlm+bin" else ())
        ret = [(r["gallery"], r["direction"], r["scoring"], r["k"]) for r in rs if r["kind"] == "retrieval"]
        assert sorted(ret) == sorted((g, d, s, k) for g in ("heldout", "hard", "random") for d in ("t2v", "v2t")
                                     for s in scorings for k in (1, 5, 10)), rid
        probe = [r for r in rs if r["kind"] == "probe"]
        assert len(probe) == 1 and probe[0]["gallery"] == "heldout"
        assert {r["task"] for r in rs if r["kind"] == "cost"} == {"train_s", "train_cpu_s", "samples_per_s",
                                                                  "eval_s"}
        assert all(r["value"] > 0 for r in rs if r["kind"] == "cost")
        for r in rs:
            if r["kind"] in ("retrieval", "probe"):
                assert 0.0 <= r["value"] <= 1.0, r
        recall = {(r["gallery"], r["direction"], r["scoring"], r["k"]): r["value"] for r in rs
                  if r["kind"] == "retrieval"}
        for (g, d, s, k), v in recall.items():  # R@k grows with k
            if k > 1:
                assert v >= recall[(g, d, s, 1)]
