"""Speed of the MoE layer's dispatch: ``python -m repro bench moe [--quick]``.

For E = 8 and 16 experts and k = 1 and 2 (top-k routing, capacity factor 1, ``S = 4096`` tokens of width 128 in
one routing group, experts of hidden width 512), tokens/s of a forward and backward pass of :class:`repro.nn.moe.MoE`
with each dispatch, measured in alternating rounds in the same run:

* ``sorted`` (ours): choices placed into a padded ``[E, C', d]`` buffer, one batched matmul per expert weight,
  ``index_add`` back;
* ``einsum``: GShard's one-hot dispatch and combine tensors ``[S, E, C]`` and two einsums (the baseline);
* ``loop``: a plain loop over experts (the reference the tests compare against);
* ``dense``: a dense GELU feed-forward layer with the active width (``k x 512``): the limit, since a routed layer
  does at least one expert's work per token plus routing.

Goals on 2 cores: ``sorted`` at least 1.5x ``einsum`` at E = 8 and 16, and at least 0.7x ``dense``. Where the rest of
the time goes: the forward of ``sorted`` (in eval mode: the same routing and capacity, without the training-mode
load statistics) split into routing (router matmul, softmax, sort, positions), the experts' matmuls on the filled
buffer, and dispatch and combine (the rest), each timed alone.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
import torch.nn as nn

from ..nn.moe import DISPATCHES, MoE, MoEConfig, route
from ..seed import set_threads
from . import time_it

D_MODEL, D_EXPERT, TOKENS = 128, 512, 4096
GOAL_EINSUM, GOAL_DENSE = 1.5, 0.7


def _step(layer: nn.Module, x: torch.Tensor) -> None:
    y = layer(x)
    y.pow(2).mean().backward()


def _dense(k: int) -> nn.Module:
    return nn.Sequential(nn.Linear(D_MODEL, k * D_EXPERT), nn.GELU(), nn.Linear(k * D_EXPERT, D_MODEL))


def _breakdown(layer: MoE, x: torch.Tensor, repeat: int) -> dict[str, float]:
    """Forward-only seconds of ``sorted``'s parts: routing, the experts' matmuls, dispatch and combine."""
    cfg = layer.cfg
    layer.eval()  # the same routing and capacity, without the training-mode load bookkeeping
    with torch.no_grad():
        total = time_it(lambda: layer(x), repeat=repeat)["median_s"]
        routing = time_it(lambda: route(layer.router(x), cfg.k, cfg.capacity_factor, cfg.routing),
                          repeat=repeat)["median_s"]
        r = route(layer.router(x), cfg.k, cfg.capacity_factor, cfg.routing)
        fill = int(r.position[r.kept].max()) + 1
        buf = torch.randn(cfg.n_expert, fill, D_MODEL)
        experts = time_it(lambda: layer._ffn(buf), repeat=repeat)["median_s"]
    layer.train()
    return {"forward_s": total, "routing": routing / total, "experts": experts / total,
            "dispatch_combine": max(0.0, 1 - (routing + experts) / total)}


def run(quick: bool = False) -> dict[str, Any]:
    threads = set_threads()
    rounds = 3 if quick else 7
    rows, summary = [], {}
    cases = ((8, 1), (16, 1)) if quick else ((8, 1), (8, 2), (16, 1), (16, 2))
    for E, k in cases:
        torch.manual_seed(0)
        x = torch.randn(TOKENS, D_MODEL, requires_grad=True)
        layers = {d: MoE(D_MODEL, MoEConfig(n_expert=E, k=k, dispatch=d), D_EXPERT) for d in DISPATCHES}
        for d in DISPATCHES[1:]:
            layers[d].load_state_dict(layers["sorted"].state_dict())
        layers["dense"] = _dense(k)
        times: dict[str, list[float]] = {name: [] for name in layers}
        for _ in range(rounds):  # alternate, so a change of load hits every variant alike
            for name, layer in layers.items():
                times[name].append(time_it(lambda layer=layer, x=x: _step(layer, x), repeat=2)["median_s"])
                layer.zero_grad(set_to_none=True)
        med = {name: statistics.median(t) for name, t in times.items()}
        tok = {name: TOKENS / s for name, s in med.items()}
        parts = _breakdown(layers["sorted"], x.detach(), 3 if quick else 7)
        row = {"E": E, "k": k, **{f"{n}_tok_s": round(v) for n, v in tok.items()},
               "vs_einsum": tok["sorted"] / tok["einsum"], "vs_loop": tok["sorted"] / tok["loop"],
               "vs_dense": tok["sorted"] / tok["dense"], "fwd_routing": parts["routing"],
               "fwd_experts": parts["experts"], "fwd_dispatch_combine": parts["dispatch_combine"]}
        rows.append(row)
        summary[f"E{E}_k{k}"] = {"vs_einsum": round(row["vs_einsum"], 3), "vs_dense": round(row["vs_dense"], 3),
                                 "goal_einsum_met": row["vs_einsum"] >= GOAL_EINSUM,
                                 "goal_dense_met": row["vs_dense"] >= GOAL_DENSE}
    return {"rows": rows, "baseline": "einsum (GShard one-hot dispatch) and dense FFN of the active width, same run",
            "summary": {"threads": threads, "tokens": TOKENS, "d_model": D_MODEL, "d_expert": D_EXPERT,
                        "capacity_factor": 1.0, "rounds": rounds, "goals": {"vs_einsum": GOAL_EINSUM,
                                                                            "vs_dense": GOAL_DENSE}, **summary}}

