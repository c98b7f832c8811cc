"""`hydra/launcher=slurm` against the cluster it submits to, before anything is submitted.

The preset asks for a GPU, 8 CPUs and 32 GB a job. On a partition that has no GPUs, or nodes
with fewer CPUs or less memory, sbatch refuses the job array with its own error (`Invalid
generic resource (gres) specification`) after the sweep has started. Here `sinfo` says what the
partition's nodes offer, and a request no node can meet is one line naming the key to set.

Submitit polls `sacct` for each job's state; on a cluster without accounting every poll logs
an error and submitit falls back to the jobs' own files. `quiet_without_accounting` keeps that
one known message out of a sweep's log when `scontrol` says accounting is off.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from src.config.errors import UserError

log = logging.getLogger(__name__)

SLURM_TARGET = "SlurmLauncher"  # hydra_plugins.hydra_submitit_launcher...SlurmLauncher
SINFO_FORMAT = "%P|%c|%m|%G"  # partition (default marked *), CPUs, memory (MB), GRES, per node


@dataclass
class Node:
    partition: str
    cpus: int
    memory_mb: int
    gpus: int


def is_slurm(launcher: Mapping[str, Any]) -> bool:
    return str(launcher.get("_target_", "")).endswith(SLURM_TARGET)


def gpus_of(gres: str) -> int:
    """GPUs in a node's GRES (`gpu:4`, `gpu:a100:8(S:0-1)`, `(null)`: none)."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if parts[-1].isdigit() else 1
    return total


def nodes(sinfo: str) -> list[Node]:
    """`sinfo -h -N -o "%P|%c|%m|%G"` read back: one Node per line."""
    found = []
    for line in sinfo.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        partition, cpus, memory, gres = fields
        found.append(
            Node(
                partition, int(cpus.rstrip("+")), int(re.sub(r"\D", "", memory) or 0), gpus_of(gres)
            )
        )
    return found


def partition_nodes(partition: str | None, sinfo: str) -> tuple[str, list[Node]]:
    """The partition the jobs go to (null: the cluster's default, `*` in sinfo) and its nodes."""
    every = nodes(sinfo)
    if partition is None:
        default = next((n.partition for n in every if n.partition.endswith("*")), None)
        partition = default or (every[0].partition if every else "")
    name = partition.rstrip("*")
    return name, [n for n in every if n.partition.rstrip("*") == name]


def check(launcher: Mapping[str, Any], sinfo: str) -> None:
    """The job's request against what the partition's nodes offer (one line where no node can
    run it: the key to set, and what the nodes have)."""
    name, found = partition_nodes(launcher.get("partition"), sinfo)
    key = "hydra.launcher"
    if not found:
        known = sorted({n.partition.rstrip("*") for n in nodes(sinfo)})
        raise UserError(
            f"{key}.partition={launcher.get('partition')}: no such partition here; sinfo lists "
            f"{', '.join(known) or 'none'}"
        )
    gpus, tasks = int(launcher.get("gpus_per_node") or 0), int(launcher.get("tasks_per_node") or 1)
    cpus = int(launcher.get("cpus_per_task") or 1) * tasks
    memory_gb = launcher.get("mem_gb")
    most_gpus = max(n.gpus for n in found)
    if gpus > most_gpus:
        fix = "0 for a CPU job" if most_gpus == 0 else f"{most_gpus} or fewer"
        raise UserError(
            f"{key}.gpus_per_node={gpus}: partition {name} has "
            f"{'no GPUs' if most_gpus == 0 else f'at most {most_gpus} a node'} (sinfo); set "
            f"{key}.gpus_per_node={fix}, or {key}.partition to one with GPUs"
        )
    most_cpus = max(n.cpus for n in found)
    if cpus > most_cpus:
        per_task = max(1, most_cpus // tasks)
        raise UserError(
            f"{key}.cpus_per_task={launcher.get('cpus_per_task')}: {tasks} task(s) of it need "
            f"{cpus} CPUs, and partition {name}'s nodes have at most {most_cpus} (sinfo); set "
            f"{key}.cpus_per_task={per_task}"
        )
    most_gb = max(n.memory_mb for n in found) // 1024
    if memory_gb is not None and int(memory_gb) > most_gb:
        raise UserError(
            f"{key}.mem_gb={memory_gb}: partition {name}'s nodes have at most {most_gb} GB "
            f"(sinfo); set {key}.mem_gb={most_gb} or less"
        )


ELSEWHERE = (
    "run the sweep from a login node of your cluster, or try it on this machine with "
    "hydra/launcher=submitit_local"
)


def preflight(launcher: Mapping[str, Any]) -> None:
    """Before a SLURM sweep submits anything: a cluster to submit to (SLURM's commands here,
    answering), and the jobs' request against what `sinfo` says its partition offers."""
    if not is_slurm(launcher):
        return
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise UserError(
            f"hydra/launcher=slurm: no SLURM commands (sbatch, sinfo) here; {ELSEWHERE}"
        )
    try:
        found = subprocess.run(
            ["sinfo", "-h", "-N", "-o", SINFO_FORMAT], capture_output=True, text=True, timeout=30
        )
    except (subprocess.SubprocessError, OSError) as e:
        raise UserError(f"hydra/launcher=slurm: sinfo did not answer ({e}); {ELSEWHERE}") from None
    if found.returncode != 0:
        said = (found.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise UserError(
            f"hydra/launcher=slurm: no SLURM cluster answers here (sinfo: {said}); {ELSEWHERE}"
        )
    check(launcher, found.stdout)


class _NoSacctErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Bypassing sacct error" not in record.getMessage()


def accounting_off() -> bool:
    """Whether this cluster keeps no job accounting (`scontrol show config`), so `sacct` fails."""
    if shutil.which("scontrol") is None:
        return False
    try:
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return False
    found = re.search(r"^AccountingStorageType\s*=\s*(\S+)", config, re.MULTILINE)
    return bool(found) and found[1].endswith("/none")


def quiet_without_accounting(launcher: Mapping[str, Any]) -> None:
    """Submitit's `sacct` error, logged at every poll, dropped where accounting is off (it then
    reads each job's state from its files, as it says)."""
    if is_slurm(launcher) and accounting_off():
        logging.getLogger("submitit").addFilter(_NoSacctErrors())
