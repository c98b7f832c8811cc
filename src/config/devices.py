"""Devices and precisions: what `device=` and `trainer.precision=` accept, whether this machine
has it, and what `auto` resolves to here (detected at run time, never assumed).

Validation reads the rules without loading torch; the resolvers load it when a run starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.config.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _is_device(value: Any) -> bool:
    kind, _, index = str(value).partition(":")
    valid_index = not index or (kind == "cuda" and index.isdigit())
    return isinstance(value, str) and kind in DEVICES and valid_index


# the `param` rule of every device key (src.config.schema)
DEVICE = {"test": _is_device, "allowed": f"one of {', '.join(DEVICES)} (cuda:N for one GPU)"}


def check_device_value(key: str, device: str) -> None:
    """A device= typed on a command line: one of DEVICES, and on this machine (one line)."""
    if not _is_device(device):
        raise UserError(f"{key}={device}: {DEVICE['allowed']}")
    check_device(key, device)


def check_device(key: str, device: str) -> None:
    """A device that is not on this machine fails now, not after the model has loaded."""
    kind = device.split(":")[0]
    if kind not in ("cuda", "mps"):
        return
    import torch

    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}={device}: no CUDA device here; use device=auto or device=cpu")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{key}={device}: MPS is not available here; use device=auto or device=cpu")


def resolve_device(device: str) -> torch.device:
    """`auto` is cuda, else mps, else cpu; a named device is checked to be here."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():  # under torchrun, each process its own GPU
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_device("device", device)
    return torch.device(device)


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bf16 natively (the avx512_bf16 or amx_bf16 flag, read on Linux).
    Elsewhere bf16 is emulated: an earlier machine without the flag ran it ~400x slower."""
    try:
        return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo.read_text()))
    except OSError:  # not Linux: no flags to read, so no claim
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 on CUDA when supported, else fp16 there; bf16 autocast on a CPU that has
    native bf16 (detected at run time, not from a list of models); fp32 elsewhere."""
    import torch

    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"trainer.precision=fp16 needs CUDA (device is {device.type}); use fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("bf16 on this CPU: no AVX512-BF16 or AMX flag, so it may be very slow")
    return precision


def autocast(device: torch.device, precision: str):
    """The forward's mixed precision for a resolved `precision`: none for fp32, else torch's
    autocast to bf16 or fp16 on the device."""

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


PEAK_RSS = Path("/proc/self/clear_refs")  # Linux: writing 5 resets the peak resident set


def reset_peak_memory() -> bool:
    """Start counting a run's peak memory here: the CUDA allocator's peak where CUDA is in use,
    and the process's peak resident set (Linux). False where the latter cannot be reset (its
    peak would be the process's whole life's: a sweep's earlier jobs in the same process)."""
    import torch

    if torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        PEAK_RSS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device, was_reset: bool) -> float | None:
    """The peak since `reset_peak_memory`, in MiB: on CUDA the memory the allocator held for
    tensors, else the process's peak resident set (VmHWM); None where it cannot be known."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    if not was_reset:
        return None
    found = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return round(int(found[1]) / 1024, 1) if found else None
