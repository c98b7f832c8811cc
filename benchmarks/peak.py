"""The machine's matmul peak, which every benchmark's rates are measured against, and the versions
its results name. Torch alone: a worker that measures the peak (or, with `rounds=0`, only reads
the versions) does not import transformers (7 s on a 2-core EPYC, of the worker's 9)."""

from __future__ import annotations

import platform
import statistics
import time
from importlib.metadata import version
from typing import Any

import torch

from src.config.devices import cpu_has_native_bf16


def now() -> float:
    """perf_counter once the GPU has finished its queued work (CUDA kernels run asynchronously;
    on CPU this is perf_counter)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _matmul_rates(size: int, repeats: int, rounds: int, **tensor: Any) -> list[float]:
    """GFLOP/s of `rounds` rounds of `repeats` `size`-square matmuls, after 3 warm-ups."""
    a, b = torch.randn(size, size, **tensor), torch.randn(size, size, **tensor)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(rounds):
        start = now()
        for _ in range(repeats):
            a @ b
        rates.append(2 * size**3 * repeats / (now() - start) / 1e9)
    return rates


def matmul_peak(device: str = "cpu", repeats: int = 10, rounds: int = 5) -> dict[str, Any]:
    """The matmul throughput the variants are measured against, one per precision a variant
    can train in: fp32 (without TF32 on a GPU: torch's default) and bf16, 2048-square on the
    CPU, 8192-square on a GPU. A CPU without native bf16 gets no bf16 peak (it emulates bf16).
    `rounds=0`: no peak, only the versions (a benchmark with no training variant to compare)."""
    size = 2048 if device == "cpu" else 8192
    result: dict[str, Any] = {"size": size, "device": device}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16} if rounds else {}
    if device == "cpu" and not cpu_has_native_bf16():
        dtypes.pop("bf16", None)
    for name, dtype in dtypes.items():
        rates = _matmul_rates(size, repeats, rounds, device=device, dtype=dtype)
        result[name] = {"best_gflops": max(rates), "median_gflops": statistics.median(rates)}
    result["device_name"] = (
        torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "cpu"
    )
    result.update(
        torch=torch.__version__,
        transformers=version("transformers"),
        python=platform.python_version(),
        torch_threads=torch.get_num_threads(),
    )
    return result
