"""What machine a number was measured on: CPU model, instruction set, threads, GPU.

fp32 results and every time or speed depend on the machine (the kernels MKL, oneDNN and ATen pick
differ by instruction set), so every stored table and results JSON carries :func:`machine_info`,
and every time shown beside it names :func:`machine_label`.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

# Instruction-set flags (from /proc/cpuinfo) that decide which CPU kernels the libraries choose.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile")


@cache
def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, val = line.partition(":")
                if not sep:
                    if out:  # first processor block only
                        break
                    continue
                out.setdefault(key.strip(), val.strip())
    except OSError:
        pass
    return out


def cpu_model() -> str:
    """The CPU's model name, e.g. ``"AMD EPYC 7B13"`` (``platform.processor()`` where /proc is absent)."""
    return _cpuinfo().get("model name") or platform.processor() or "unknown"


def isa_flags() -> list[str]:
    """Which of :data:`ISA_FLAGS` this CPU has (empty where /proc/cpuinfo is absent)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return [f for f in ISA_FLAGS if f in flags]


def isa_level() -> str:
    """The widest vector instruction set: ``"avx512"``, ``"avx2"`` or ``"other"``."""
    flags = isa_flags()
    return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """The machine as stored beside results: CPU model and vendor, instruction set, torch's CPU capability
    (the kernel path ATen dispatches to), threads in use, usable cores, GPU names (empty list: none).

    ``threads``: torch's intra-op threads, read from torch when not given (and torch is importable).
    """
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_vendor": _cpuinfo().get("vendor_id", "unknown"),
        "isa": isa_level(),
        "isa_flags": isa_flags(),
        "cpus": len(os.sched_getaffinity(0)),
        "threads": threads,
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["threads"] = threads if threads is not None else torch.get_num_threads()
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
    except ImportError:  # pragma: no cover - torch is a dependency
        info["gpus"] = []
    env = {k: os.environ[k] for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ}
    if env:
        info["kernel_env"] = env
    return info


def machine_label(info: dict[str, Any] | None = None) -> str:
    """A short line naming the machine, for beside a time or a speed: ``"Intel Xeon (avx512), 2 threads"``."""
    info = info or machine_info()
    gpu = f", GPU {info['gpus'][0]}" if info.get("gpus") else ""
    threads = info.get("threads") or info.get("cpus")
    cpu, isa = info.get("cpu_model") or info.get("cpu") or "unknown CPU", info.get("isa", "ISA not recorded")
    return f"{cpu} ({isa}), {threads} thread{'' if threads == 1 else 's'}{gpu}"
