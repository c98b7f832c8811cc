"""`python -m src.run -m <sweep overrides> --dry-run`: the jobs a sweep would launch, checked.

Each job's config is composed and validated exactly as its run would be (a bad value in any job
is the usual one line, exit 2), and printed with its number, overrides and folder. Nothing is
created and no model, tokenizer or corpus loads. With `hparams_search=optuna` the jobs are not
known in advance: the study, its search space and its number of trials are printed instead.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterable, Iterator

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from src.config import cli, preflight
from src.config import validation as spec
from src.config.compose import compose
from src.config.errors import UserError, reported
from src.sweeps import slurm, study
from src.trainers.distributed import hydra_overrides

MULTIRUN_FLAGS = ("-m", "--multirun")


def folder(cfg: DictConfig, key: str) -> str:
    """An output folder as the launch will name it; `${now:...}` is the time it starts."""
    parent, _, leaf = key.rpartition(".")
    written = str(OmegaConf.to_container(OmegaConf.select(cfg, parent), resolve=False)[leaf])
    if "${now:" in written:
        return re.sub(r"\$\{now:[^}]*\}", "<start time>", written)
    return str(OmegaConf.select(cfg, key))


def swept(override: str) -> bool:
    """`a=1,2` or `a=choice(...)`/`interval(...)`: a sweep, not one value."""
    value = override.split("=", 1)[-1]
    return "," in value or "(" in value


def job_overrides(overrides: list[str]) -> list[list[str]]:
    """`a=1,2 b=x,y` as the basic sweeper expands it: one override list per job, the
    cartesian product in the order given (its `choice`, `range` and `glob` included)."""
    per_override = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            per_override.append([override.input_line])
        elif override.is_discrete_sweep():
            key = override.get_key_element()
            per_override.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:  # interval(): a sampler's range, which the basic sweeper cannot enumerate
            raise UserError(
                f"{override.input_line}: a range the basic sweeper cannot list; "
                "sample it with hparams_search=optuna, or give values: a=1,2,3"
            )
    return [list(job) for job in itertools.product(*per_override)]


def optuna(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The study's search space (the preset's and the command line's) and its trial count."""
    sweeper, params = cfg.hydra.sweeper, cfg.hydra.sweeper.get("params")  # ~params: none
    space = dict(OmegaConf.to_container(params) if params else {})
    space.update(o.split("=", 1) for o in overrides if swept(o))
    drawn, _ = study.space(params, [o for o in overrides if swept(o)])
    settings = study.settings_of(sweeper)
    _, n_trials = study.sampler_of(settings, drawn)  # a grid: at most its size
    names, directions = study.objectives_of(settings, cfg)
    goals = ", ".join(
        f"{d} {'the best eval ' if n == cfg.trainer.metric_for_best_model else ''}{n}"
        for n, d in zip(names, directions, strict=True)
    )
    return [
        f"Optuna study {sweeper.study_name} in {folder(cfg, 'hydra.sweep.dir')} "
        f"({sweeper.storage}), {goals}",
        "search space:",
        *(f"  {key}: {value} -> {study.values_of(drawn[key])}" for key, value in space.items()),
        f"sampler {_target(sweeper.get('sampler'))}, pruner {_target(sweeper.get('pruner'))}",
        f"{n_trials} trials, {sweeper.n_jobs} at a time; nothing was created "
        "(drop --dry-run to start the study; the same command resumes it).",
    ]


def study_preflight(args: list[str], multirun: bool = False) -> None:
    """Before Hydra starts: a study's settings (src.sweeps.study.check) and, for
    `hydra/launcher=slurm`, the jobs' request against what the cluster's partition offers
    (src.sweeps.slurm), one line each; and a sweep or study none of whose jobs can run
    (`no_job_runs`), its mistake in one line, nothing launched or submitted."""
    groups = {a.lstrip("+~").split("=", 1)[0] for a in args}
    a_study = bool(groups & {"hparams_search", "hydra/sweeper"})
    if not multirun and not a_study and "hydra/launcher" not in groups:
        return

    overrides = [a for a in args if not a.startswith("-")]
    hydra_part = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    app = [o for o in overrides if o not in hydra_part]
    fixed = [*hydra_part, *(o for o in app if not swept(o))]
    cfg = composed(fixed, validate=False)
    a_study = a_study or is_study(cfg)
    if a_study:
        study.check(cfg, [o for o in app if swept(o)])
    if multirun:
        no_job_runs(hydra_part, study_jobs(cfg, app) if a_study else job_overrides(app))
    if a_study:
        study.reach_storage(cfg)
    slurm.preflight(cfg.hydra.launcher)
    slurm.quiet_without_accounting(cfg.hydra.launcher)


def is_study(cfg: DictConfig) -> bool:
    return "optuna" in str(OmegaConf.select(cfg, "hydra.sweeper._target_", default=""))


def no_job_runs(hydra_part: list[str], jobs: Iterable[list[str]]) -> None:
    """A sweep whose every job has a mistake (one of the overrides they share, say) is refused
    with that mistake in one line, before Hydra makes a folder or a study its storage record.
    Where some job can run, the sweep starts: a job alone with a mistake fails alone, its
    folder and the summary say why (src.sweeps.job). Stops at the first job that validates."""
    first = None
    for job in jobs:
        try:
            composed([*hydra_part, *job])
            return
        except UserError as e:
            first = first or e
    if first is not None:
        raise UserError(f"{first} (in every job of this sweep: nothing was launched)")


STUDY_POINTS = 32  # a study's trials tried at most, before its first


def study_jobs(cfg: DictConfig, app: list[str]) -> Iterator[list[str]]:
    """Trials a study can draw, as their overrides: every combination of its choices (at most
    STUDY_POINTS) with each range at its low, then its high bound. Its trials are drawn, not
    listed: a study is refused only where none of these points can run."""
    distributions, fixed = study.space(cfg.hydra.sweeper.get("params"), app)
    choices = {k: d.choices for k, d in distributions.items() if hasattr(d, "choices")}
    ranges = {k: (d.low, d.high) for k, d in distributions.items() if k not in choices}
    combos = itertools.islice(itertools.product(*choices.values()), STUDY_POINTS)
    for combo, end in itertools.product(combos, (0, 1) if ranges else (0,)):
        point = {**dict(zip(choices, combo, strict=True)), **{k: r[end] for k, r in ranges.items()}}
        yield [*(study.override_of(k, v) for k, v in point.items()), *fixed]


def _target(node) -> str:
    return "none" if node is None else str(node.get("_target_", node)).rsplit(".", 1)[-1]


def composed(overrides: list[str], validate: bool = True) -> DictConfig:
    """The config with Hydra's node, validated without it (as the run will see it). An
    override Hydra cannot apply is one line: Hydra's first, and what OmegaConf said."""
    try:
        cfg = compose(overrides, hydra=True)
    except HydraException as e:
        said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        cause = " ".join(str(e.__cause__).split()[:40]) if e.__cause__ else ""
        raise UserError(f"{said}{f' ({cause})' if cause else ''}") from None
    if validate:
        spec.validate(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    return cfg


def before_hydra(argv: list[str]) -> list[str]:
    """`python -m src.run ARGV` before Hydra starts: Hydra's flags read apart from the
    overrides, the overrides checked (typos; a study's sampler, pruner, space and storage),
    `--dry-run` shown and ended here; the command line Hydra is then given (a sweep job's folder
    quoted, under torchrun every rank's run folder rank 0's)."""

    argv = cli.quote_paths(argv, ("resume",))  # a sweep job's folder, as shown
    with reported():
        flags, overrides = cli.hydra_command_line(argv)
        preflight.check(overrides, other_configs=cli.other_configs(flags))
        overrides_and_path = [*overrides, *cli.search_path(flags)]
        if "--dry-run" in argv:  # the jobs a sweep would launch, checked, nothing run
            sys.exit(main([*overrides_and_path, *(["-m"] if flags.multirun else [])]))
        if cli.runs_a_job(flags):
            study_preflight(overrides_and_path, flags.multirun)
    if flags.hydra_help:  # Hydra's own help composes Hydra's config: the app's groups go
        argv = ["--hydra-help", *(o for o in overrides if o.lstrip("+~").startswith("hydra"))]
    if flags.cfg == "hydra" and flags.resolve:
        argv = hydra_node_resolved(argv, flags.package)
    return [*argv, *hydra_overrides(argv)]


def hydra_node_resolved(argv: list[str], package: str | None) -> list[str]:
    """`--cfg hydra --resolve`: Hydra resolves its own node apart from the job's, where a
    study's `hydra.sweeper` reads the job's (its direction, its name); the whole config resolved
    and Hydra's node of it shown instead (`--cfg all -p hydra...`), the same YAML."""
    out, words = [], iter(argv)
    for word in words:
        if word in ("--cfg", "-c"):
            out += [word, "all"]
            next(words, None)
        elif word == "--cfg=hydra":
            out.append("--cfg=all")
        else:
            out.append(word)
    return out if package else [*out, "-p", "hydra"]


def main(argv: list[str]) -> int:
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    overrides = [a for a in argv if a not in MULTIRUN_FLAGS]
    hydra_part = [o for o in overrides if o.lstrip("+~").startswith("hydra")]
    app = [o for o in overrides if o not in hydra_part]
    # the overrides every job shares, on the swept keys' defaults: checked as a whole only for a
    # single run or a study. A sweep's jobs are each checked below, as each will run: its swept
    # keys can make a shared value valid (max_length=1024 over backbones that allow it, on a
    # default that allows 512) or name the data (dataset.train_file=a.csv,b.csv)
    data_swept = any(swept(o) and o.lstrip("+~").startswith("dataset") for o in app)
    base = composed([*hydra_part, *(o for o in app if not swept(o))], validate=False)
    a_study = is_study(base)
    if (a_study or not multirun) and not data_swept:
        spec.validate(OmegaConf.masked_copy(base, [k for k in base if k != "hydra"]))
    if a_study:
        study.check(base, [o for o in app if swept(o)])
        print("\n".join(optuna(base, app)))
        return 0
    if not multirun:
        print(f"1 run: {' '.join(app) or '(defaults)'} -> {folder(base, 'hydra.run.dir')}")
        return 0
    jobs = job_overrides(app)
    lines = [f"sweep folder: {folder(base, 'hydra.sweep.dir')} (hydra.sweep.dir)"]
    for num, job in enumerate(jobs):
        cfg = composed([*hydra_part, *job, f"hydra.job.num={num}"])
        lines.append(f"job {num}: {' '.join(job) or '(defaults)'} -> {cfg.hydra.sweep.subdir}")
    lines.append(
        f"{len(jobs)} job{'s' * (len(jobs) != 1)}; nothing was created (drop --dry-run to launch)."
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from src.config.errors import run_command

    run_command(main)
