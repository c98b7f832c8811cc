"""Multi-process training (DDP): who is rank 0, one run folder, gathers.

Nothing here launches processes: `torchrun --nproc_per_node=N -m src.run ...` does, or a SLURM
job of several tasks that Hydra's submitit launcher submitted (`hydra/launcher=slurm
hydra.launcher.tasks_per_node=4`), whose environment `from_submitit` turns into torchrun's.
That environment (RANK, WORLD_SIZE, LOCAL_RANK) is all the rest reads. Without it every
function is a no-op for a single process. `share_machine` splits one machine between the jobs
that hydra/launcher=joblib runs side by side.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

import joblib

log = logging.getLogger(__name__)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init_process_group() -> None:
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def from_submitit() -> None:
    """In a submitit job of several tasks (SLURM, or submitit's local executor): export the
    master address and port, the ranks and the world size as torchrun would, and join the
    process group, so the job's tasks are one DDP run. A one-task job is left alone.

    The sweep's config gives every task the same job folder; rank 0 alone writes there, and
    the other ranks' log lines go to their task's own submitit log, not to run.log."""
    if "RANK" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") not in ("slurm", "local"):
        return
    import submitit

    if submitit.JobEnvironment().num_tasks < 2:
        return
    # every task sees the node's GPUs and takes cuda:LOCAL_RANK, as under torchrun
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    init_process_group()
    log.info("submitit task %d of %d: one DDP run", env.rank, env.world_size)
    if not is_main():
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)  # run.log is rank 0's


def hydra_overrides(argv: list[str]) -> list[str]:
    """Extra overrides so that every rank uses the run folder rank 0 chose, and only rank 0
    writes Hydra's snapshot and log there (hydra#2070: one folder per rank otherwise)."""
    if world_size() == 1 or any(a in ("-m", "--multirun") for a in argv):
        return []
    import torch.distributed as dist

    init_process_group()
    chosen = [a.split("=", 1)[1] for a in argv if a.startswith("hydra.run.dir=")]
    folder = [chosen[0] if chosen else None]
    if is_main() and folder[0] is None:
        folder[0] = datetime.now().strftime("outputs/runs/%Y-%m-%d_%H-%M-%S_%f")
    dist.broadcast_object_list(folder, src=0)
    extra = [] if chosen else [f"hydra.run.dir={folder[0]}"]
    if not is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    return extra


def shutdown() -> None:
    """End a run of several processes together: every rank waits for the others (rank 0 may
    still be saving), then the process group is destroyed before the interpreter exits. A rank
    that left first, with gloo's threads still working, was killed by SIGABRT ("terminate called
    without an active exception")."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (a preemption signal seen by any rank)."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def shard(indices: list[int]) -> list[int]:
    """This rank's share of `indices`: padded by wrapping around to a multiple of the world
    size (as DistributedSampler does), then every world_size-th item from this rank's offset,
    so consecutive per-rank batches together form the single-process batch."""
    n = world_size()
    if n == 1:
        return indices
    padded = indices + indices[: (-len(indices)) % n]
    return padded[rank() :: n]


def gather_rows(rows, total: int):
    """Undo `shard` for per-example outputs: every rank's rows back in dataset order, padding
    dropped, so each example counts exactly once."""
    n = world_size()
    if n == 1:
        return rows
    import torch
    import torch.distributed as dist

    parts = [None] * n
    dist.all_gather_object(parts, torch.as_tensor(rows))
    interleaved = torch.stack(parts, dim=1).reshape(-1, *parts[0].shape[1:])
    return interleaved[:total].numpy()


def share_machine(n_jobs: int, job_num: int, device: str) -> None:
    """Jobs run side by side by hydra/launcher=joblib share the cores and spread over the GPUs.

    Without this each job's torch takes every core (n_jobs x oversubscribed), and the HF
    Trainer takes every visible GPU (DataParallel). A joblib worker serves several jobs and
    keeps the GPU it started CUDA on, so only a worker's first job chooses one.
    """
    import torch

    cores = joblib.cpu_count()  # honours affinity masks and cgroup CPU quotas
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib's -1 = all cores
    torch.set_num_threads(max(1, cores // parallel))
    log.info("job %d of a parallel sweep: %d torch threads", job_num, torch.get_num_threads())
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = gpus.split(",") if gpus else [str(i) for i in range(torch.cuda.device_count())]
    if len(visible) > 1 and not torch.cuda.is_initialized() and device in ("auto", "cuda"):
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[job_num % len(visible)]
        log.info("job %d: CUDA_VISIBLE_DEVICES=%s", job_num, os.environ["CUDA_VISIBLE_DEVICES"])
