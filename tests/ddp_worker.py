"""A tiny training run for tests/test_ddp.py: under torchrun it trains data parallel, alone it trains in one process.

``python tests/ddp_worker.py OUT.pt`` (or via ``torchrun --nproc_per_node 2``) writes, from rank 0, the history's
train losses, the last validation losses and the final parameters to ``OUT.pt``.
"""

import sys

import numpy as np
import torch

from repro.data.sampler import DomainSampler
from repro.nn.gpt import GPT, GPTConfig
from repro.train import TrainConfig, train


def run() -> dict:
    rng = np.random.default_rng(0)
    data = {"a": rng.integers(0, 50, 2000).astype(np.uint16), "b": (np.arange(3000) % 50).astype(np.uint16)}
    val = {"a": rng.integers(0, 50, 400).astype(np.uint16), "b": (np.arange(400) % 50).astype(np.uint16)}
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context=16, n_layer=2, n_head=2, d_model=32))
    sampler = DomainSampler(data, context=16, batch_size=8, weights=[0.3, 0.7], seed=1)
    cfg = TrainConfig(max_steps=4, lr=1e-2, min_lr=1e-3, warmup_steps=1, grad_accum=2, eval_every=2,
                      eval_batches=1, progress=False)

    def on_eval(step, losses, state):
        state["sampler"].set_weights([0.6, 0.4])

    hist = train(model, sampler, cfg, val_tokens=val, on_eval=on_eval)
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_initialized() else 1
    return {"world_size": world, "train_loss": [h["train_loss"] for h in hist], "val": hist[-1]["val"],
            "params": {k: v.detach().clone() for k, v in model.state_dict().items()}}


if __name__ == "__main__":
    import torch.distributed as dist

    out = run()

    if not dist.is_initialized() or dist.get_rank() == 0:
        torch.save(out, sys.argv[1])
    if dist.is_initialized():
        dist.destroy_process_group()
