"""Optuna studies as Hydra sweeps (`hparams_search=optuna`), on current Optuna.

A small adapter, not an optimizer: Optuna's samplers, pruners and storages do the work. The
sweeper (hydra_plugins/src_sweepers, conf/hydra/sweeper/optuna.yaml) asks the study for
trials, turns each into a job's overrides, launches them with Hydra's launcher (basic, joblib,
submitit/SLURM) and tells the study how each ended. A job learns its trial from
`hydra.sweeper.trial` and reports each epoch's validation value through the study's storage,
so a pruner can stop it at the end of an epoch under any launcher (`JobTrial`).

The search space (`hydra.sweeper.params`, and sweeps on the command line), as
hydra-optuna-sweeper read it:
    interval(a, b)              a float in [a, b] (an int for two ints)
    tag(log, interval(a, b))    the same on a log scale
    choice(a, b, ...)           one of the values
    range(a, b[, step])         a, a + step, ... up to b (floats: a stepped float)
Several processes with the same study name and storage share the study (one sqlite file on
one machine, an RDB URL across machines).
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.core.utils import JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.config import rundir
from src.config.errors import UserError
from src.config.rundir import read_status, write_atomic
from src.sweeps import objectives

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

PRUNED = "pruned"  # status.json of a job its pruner stopped
SQLITE_TIMEOUT_S = 60  # parallel jobs of one machine wait this long for the sqlite file's lock
# what a command that lost the race to create a new study's storage sees; it opens it again
CREATE_RACE = ("already exists", "UNIQUE constraint failed: alembic_version")
STORAGE_ATTEMPTS = 4
RESULTS_FILE = "optimization_results.yaml"  # <sweep dir>/: the best trial so far


# --- the search space --------------------------------------------------------------------------


def space(params: Mapping[str, Any] | None, arguments: list[str]) -> tuple[dict, list[str]]:
    """(name -> Optuna distribution, the fixed overrides every trial gets) from the sweeper's
    `params` and the command line's overrides (a sweep there joins the space)."""

    texts = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    distributions, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element()
        if override.is_sweep_override():
            distributions[key] = distribution(checked(override))
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line
            distributions.pop(key, None)
    return distributions, list(fixed.values())


def distribution(override: Any) -> optuna.distributions.BaseDistribution:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(Transformer.encode)))
    if override.is_range_sweep():
        numbers = (value.start, value.stop, value.step)
        if any(isinstance(x, float) for x in numbers):
            return FloatDistribution(value.start, value.stop, step=value.step)
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    log_scale = "log" in value.tags
    if isinstance(value.start, int) and isinstance(value.end, int):
        return IntDistribution(value.start, value.end, log=log_scale)
    return FloatDistribution(value.start, value.end, log=log_scale)


def checked(override: Any) -> Any:
    """`override` if its sweep holds a value at all: bounds in order, a log scale above zero,
    a range or choice with something in it (else one line, before any trial)."""
    where, value = f"hydra.sweeper.params.{override.input_line}", override.value()
    if override.is_choice_sweep():
        if not list(override.sweep_iterator()):
            raise UserError(f"{where}: nothing to choose from; give at least one value")
    elif override.is_range_sweep():
        if not value.shuffle and value.stop < value.start:
            raise UserError(
                f"{where}: an empty range ({value.start} is above {value.stop}); "
                "range(start, stop[, step]) counts up from start"
            )
    elif value.end < value.start:
        raise UserError(f"{where}: bounds in the wrong order; write the low one first")
    elif "log" in value.tags and value.start <= 0:
        raise UserError(f"{where}: a log scale needs a low bound above 0 (it is {value.start})")
    return override


def values_of(found: Any, most: int = 8) -> str:
    """What a distribution draws from, as --dry-run prints it: its values where it has few,
    else its bounds and scale."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(found, CategoricalDistribution):
        return ", ".join(map(str, found.choices))
    step = getattr(found, "step", None)
    if step:
        count = int(round((found.high - found.low) / step)) + 1
        if count <= most:
            return ", ".join(f"{found.low + i * step:g}" for i in range(count))
        return f"{count} values, {found.low} to {found.high} by {step}"
    scale = "log scale" if found.log else "uniform"
    kind = "an integer" if type(found).__name__ == "IntDistribution" else "a float"
    return f"{kind} in [{found.low}, {found.high}], {scale}"


def override_of(name: str, value: Any) -> str:
    return f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}"


# --- what the sweeper checks before any trial runs ---------------------------------------------


def check_keys(config: DictConfig, names: list[str]) -> None:
    """Each search-space key names a key of the composed config (`+key` adds one)."""
    sentinel = object()
    for name in names:
        if name.startswith(("+", "~")) or name.startswith("hydra."):
            continue
        if OmegaConf.select(config, name, default=sentinel) is sentinel:
            raise UserError(
                f"hydra.sweeper.params.{name}: not a key of the config; `python -m src.spec` "
                f"lists the keys (or write +{name} to add one)"
            )


def optuna_object(node: Any, kind: str, module: str) -> Any:
    """A sampler or pruner from `{_target_: optuna.<module>.<Class>, ...}` (None: none)."""
    if node is None:
        return None
    target = str(node.get("_target_", "")) if isinstance(node, Mapping) else str(node)
    if target == "optuna.samplers.MOTPESampler":
        raise UserError(
            "hydra/sweeper/sampler=motpe: Optuna 4 removed MOTPESampler; use "
            "hydra/sweeper/sampler=tpe (TPESampler handles several objectives) or nsgaii"
        )

    try:
        if not target.startswith(f"optuna.{module}."):
            raise ImportError(target)
        where, name = target.rsplit(".", 1)
        if not isinstance(getattr(importlib.import_module(where), name), type):
            raise ImportError(target)
    except (ImportError, AttributeError):
        raise UserError(
            f"hydra.sweeper.{kind}._target_={target or '(none)'}: not an Optuna {kind}; use one "
            f"of optuna.{module} (e.g. {EXAMPLES[kind]})"
        ) from None
    if isinstance(node, Mapping):  # null: the library's own default (hydra-optuna-sweeper's)
        node = {k: v for k, v in node.items() if v is not None}
    try:
        return instantiate(node, _convert_="all")
    except Exception as e:
        reason = " ".join(str(e.__cause__ or e).split())
        raise UserError(
            f"hydra.sweeper.{kind}: {target} refuses its arguments ({reason})"
        ) from None


EXAMPLES = {
    "sampler": "optuna.samplers.TPESampler",
    "pruner": "optuna.pruners.MedianPruner, optuna.pruners.HyperbandPruner",
}


def storage(url: str | None) -> Any:
    """The study's storage, opened (a URL that cannot be is one line); sqlite waits for its
    lock rather than failing when parallel jobs report at once."""
    if url is None:
        return None
    from optuna.storages import RDBStorage

    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    try:
        for attempt in range(STORAGE_ATTEMPTS):
            try:
                return RDBStorage(url, engine_kwargs=kwargs)
            except Exception as e:  # commands starting one study at once race to create its
                lost = any(words in str(e) for words in CREATE_RACE)  # tables and schema row:
                if not lost or attempt == STORAGE_ATTEMPTS - 1:  # the losers open what the
                    raise  # winner made
                time.sleep(0.2 * (attempt + 1))
    except Exception as e:
        reason = " ".join(str(e).split())[:200]
        raise UserError(f"hydra.sweeper.storage={url}: cannot be opened ({reason})") from None


def custom_space(path: str | None) -> Any:
    """`hydra.sweeper.custom_search_space`: the function it names (None: none)."""
    if not path:
        return None
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
        if not callable(found):
            raise TypeError(f"{name} is a {type(found).__name__}")
        return found
    except Exception as e:
        reason = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        raise UserError(
            f"hydra.sweeper.custom_search_space={path}: not a function that can be imported "
            f"({reason}); name one as module.function, called with (cfg, trial)"
        ) from None


def grid_of(distributions: dict[str, Any]) -> dict[str, list[Any]]:
    """GridSampler's grid: every value of each parameter, as --dry-run lists them."""
    from optuna.distributions import CategoricalDistribution

    grid = {}
    for name, found in distributions.items():
        if isinstance(found, CategoricalDistribution):
            grid[name] = list(found.choices)
        elif getattr(found, "step", None):
            count = int(round((found.high - found.low) / found.step)) + 1
            grid[name] = [found.low + i * found.step for i in range(count)]
        else:
            raise UserError(
                f"hydra.sweeper.params.{name}: a grid needs values, and an interval has none; "
                "give choice(...) or range(...), or use another sampler"
            )
    return grid


def sampler_of(settings: Settings, distributions: dict[str, Any]) -> tuple[Any, int]:
    """The study's sampler and its trial count: a grid (`_partial_` GridSampler) is filled in
    from the search space, and runs at most its size."""
    import optuna

    sampler = optuna_object(settings.sampler, "sampler", "samplers")
    if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
        grid = grid_of(distributions)
        size = math.prod(len(v) for v in grid.values())
        if size < settings.n_trials:
            log.info(f"a grid of {size} points: {size} trials, not {settings.n_trials}")
        return sampler(grid), min(settings.n_trials, size)
    return sampler, settings.n_trials


def check_workers(n_jobs: int, launcher: DictConfig) -> None:
    """`n_jobs` trials at a time need as many workers from the launcher."""
    target = str(launcher.get("_target_", ""))
    if n_jobs <= 1:
        return
    if "BasicLauncher" in target:
        raise UserError(
            f"hydra.sweeper.n_jobs={n_jobs}: the basic launcher runs one job at a time; add "
            f"hydra/launcher=joblib hydra.launcher.n_jobs={n_jobs} (or set n_jobs=1)"
        )
    workers = (
        launcher.get("n_jobs") if "joblib" in target.lower() else launcher.get("array_parallelism")
    )
    if isinstance(workers, int) and 0 < workers < n_jobs:
        key = "n_jobs" if "joblib" in target.lower() else "array_parallelism"
        raise UserError(
            f"hydra.sweeper.n_jobs={n_jobs}: the launcher runs {workers} at a time "
            f"(hydra.launcher.{key}={workers}); raise that, or lower n_jobs"
        )


def objectives_of(settings: Settings, cfg: DictConfig) -> tuple[list[str], list[str]]:
    """The study's objectives and their directions, checked against the run's metric
    (src.sweeps.objectives): maximize an error and the study looks for the worst model. Optuna
    cannot prune several objectives: a pruner with them is one line."""
    metric = cfg.trainer.metric_for_best_model
    names = objectives.names_of(settings.objectives, metric)
    directions = objectives.check_directions(settings.direction, names, metric)
    if len(names) > 1 and settings.pruner is not None:
        raise UserError(
            f"hydra.sweeper.pruner: Optuna prunes a study of one objective only, and this one "
            f"has {len(names)} ({', '.join(names)}); drop the pruner (hydra.sweeper.pruner=null)"
        )
    return names, directions


def settings_of(sweeper: Mapping[str, Any]) -> Settings | None:
    """This sweeper's settings from the composed `hydra.sweeper` (None: another sweeper)."""
    if "src_sweepers" not in str(sweeper.get("_target_", "")):
        return None
    return Settings(**{k: v for k, v in sweeper.items() if not str(k).startswith("_")})


def check(cfg: DictConfig, arguments: list[str]) -> None:
    """Everything a study needs, checked before any trial runs (src.run before Hydra starts,
    and --dry-run): the space's keys, the sampler and pruner, the launcher's workers; the
    storage is `reach_storage`'s, which --dry-run leaves alone."""
    settings = settings_of(cfg.hydra.sweeper)
    if settings is None:
        return
    distributions, _ = space(settings.params, arguments)
    check_keys(cfg, list(distributions))
    objectives_of(settings, cfg)
    sampler_of(settings, distributions)
    custom_space(settings.custom_search_space)
    optuna_object(settings.pruner, "pruner", "pruners")
    check_workers(settings.n_jobs, cfg.hydra.launcher)


def reach_storage(cfg: DictConfig) -> None:
    """The study's storage opened once (a database it cannot reach: one line, no trial run)."""
    settings = settings_of(cfg.hydra.sweeper)
    if settings is not None and settings.storage:
        if settings.storage.startswith("sqlite:///"):  # its folder: the sweep's, made anyway
            folder = Path(settings.storage.removeprefix("sqlite:///")).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(
                    f"hydra.sweeper.storage={settings.storage}: cannot be opened "
                    f"({folder}: {e.strerror})"
                ) from None
        storage(settings.storage).engine.dispose()


# --- the sweeper -----------------------------------------------------------------------------


@dataclass
class Settings:
    """The sweeper's keys (`hydra.sweeper.*`) and their defaults, declared once: the option's
    YAML, conf/hydra/sweeper/optuna.yaml, composes them and sets the sampler."""

    direction: Any = "maximize"  # or minimize (the metric's: checked); a list: one per objective
    # what the study optimises: the run's metric, and with it costs (src.sweeps.objectives),
    # e.g. [f1, train_seconds]; null: the metric alone
    objectives: Any = None
    study_name: str | None = None  # null: Optuna names it (hparams_search=optuna: by the data)
    storage: str | None = None  # a database URL (sqlite:///..., postgresql://...); null: memory
    n_trials: int = 20  # trials this command runs (a resumed study runs this many more)
    n_jobs: int = 1  # trials launched at a time (the launcher needs as many workers)
    sampler: Any = None  # any optuna.samplers class, as {_target_: ..., key: value}
    pruner: Any = None  # any optuna.pruners class: {_target_: optuna.pruners.MedianPruner, ...}
    params: Any = None  # the search space: key: interval(a, b) | tag(log, interval(a, b)) |
    # choice(a, b) | range(a, b, step)
    max_failure_rate: float = 0.0  # share of a batch's trials that may fail before it stops
    # a dotted path to `configure(cfg, trial)`, which suggests more parameters on each trial
    # after the search space's (hydra-optuna-sweeper's key; `+name` adds a key)
    custom_search_space: str | None = None
    trial: int | None = None  # set by the sweeper for each job: the id of its trial


def run_study(
    settings: Settings, config: DictConfig, launcher: Any, arguments: list[str]
) -> optuna.Study:
    """Ask, launch, tell, `n_trials` times, `n_jobs` at a time."""
    import optuna

    distributions, fixed = space(settings.params, arguments)
    check_keys(config, list(distributions))
    check_workers(settings.n_jobs, config.hydra.launcher)
    sampler, n_trials = sampler_of(settings, distributions)
    extend = custom_space(settings.custom_search_space)
    pruner = optuna_object(settings.pruner, "pruner", "pruners")
    _, directions = objectives_of(settings, config)
    study = optuna.create_study(
        study_name=settings.study_name,
        storage=storage(settings.storage),
        sampler=sampler,
        pruner=pruner or optuna.pruners.NopPruner(),
        directions=directions,
        load_if_exists=True,
    )
    if [d.name.lower() for d in study.directions] != directions:
        had = [d.name.lower() for d in study.directions]
        raise UserError(
            f"hydra.sweeper.study_name={study.study_name}: the study in {settings.storage} "
            f"optimises {len(had)} objective(s) ({', '.join(had)}), and this command "
            f"{len(directions)} ({', '.join(directions)}); name another study"
        )
    log.info(
        f"study {study.study_name} ({settings.storage or 'in memory'}): {len(study.trials)} "
        f"trials so far; {n_trials} to run, {settings.n_jobs} at a time; sampler "
        f"{type(study.sampler).__name__}, pruner {type(study.pruner).__name__}"
    )
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)  # as Hydra's own sweeper does: the command's
    OmegaConf.save(config, sweep_dir / rundir.MULTIRUN_FILE)  # config, read to say how to resume
    left, job_idx = n_trials, 0
    stopped = interrupted(study, sweep_dir)[:left]  # trials a stopped job left: theirs to finish
    if stopped:
        log.info(f"resuming trial(s) {', '.join(str(n) for n, _ in stopped)} where they stopped")
        returns = launcher.launch([(*o, "resume=auto") for _, o in stopped], initial_job_idx=0)
        for (number, _), ret in zip(stopped, returns, strict=True):
            tell(study, number, ret, len(directions))
        job_idx, left = len(returns), left - len(returns)
    while left > 0:
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            log.info("every point of the grid has a trial: nothing left to run")
            break
        trials = [study.ask(distributions) for _ in range(min(settings.n_jobs, left))]
        for trial in trials if extend else ():
            extend(config, trial)  # more parameters, suggested in Python
        overrides = [
            (
                *(override_of(k, v) for k, v in t.params.items()),
                *fixed,
                f"hydra.sweeper.trial={t.number}",
            )  # the job reports to its trial; its folder
            for t in trials  # begins with the number
        ]
        for trial, job in zip(trials, overrides, strict=True):  # what resumes it if it stops
            trial.set_user_attr(OVERRIDES_ATTR, list(job))
        returns = launcher.launch(overrides, initial_job_idx=job_idx)
        job_idx, left = job_idx + len(returns), left - len(returns)
        failed = [
            ret
            for trial, ret in zip(trials, returns, strict=True)
            if not tell(study, trial, ret, len(directions))
        ]
        if len(failed) / len(returns) > settings.max_failure_rate:
            failed[0].return_value  # noqa: B018  (re-raises the job's error: the sweep stops)
    write_results(study, Path(config.hydra.sweep.dir))
    return study


OVERRIDES_ATTR = "overrides"  # a trial's user attribute: its job's overrides, which resume it
STOPPED = ("interrupted", "preempted", "running")  # status.json of a job that did not end


def interrupted(study: optuna.Study, sweep_dir: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(number, overrides) of each trial a job left RUNNING when it stopped: Ctrl-C, SIGTERM
    or preemption (its status.json says so), or a process that died without a word (kill -9:
    `running`, and its folder's lock is free). A trial whose job is alive, whose folder is not
    here (another machine's) or that ended but is not told yet (its owner will) is left alone."""
    from optuna.trial import TrialState

    found = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        overrides = trial.user_attrs.get(OVERRIDES_ATTR)
        folders = [
            p for p in sweep_dir.glob(f"{trial.number}_*") if (p / rundir.HYDRA_DIR).is_dir()
        ]
        if not overrides or len(folders) != 1:
            continue
        if read_status(folders[0]).get("status") not in STOPPED:
            continue
        if not rundir.claim(folders[0]):  # its job is alive
            continue
        rundir.release(folders[0])
        found.append((trial.number, tuple(overrides)))
    return found


def tell(study: optuna.Study, trial: optuna.Trial | int, ret: Any, objectives: int) -> bool:
    """The study learns how the job ended: complete with its value, pruned (status.json), or
    failed. False for a failed job."""
    from optuna.trial import TrialState

    if ret.status != JobStatus.COMPLETED:
        told(study, trial, state=TrialState.FAIL)
        return False
    folder = Path(ret.hydra_cfg.hydra.runtime.output_dir)
    if read_status(folder).get("status") == PRUNED:
        told(study, trial, state=TrialState.PRUNED)
        return True
    values = ret.return_value if objectives > 1 else [ret.return_value]
    if values is None or any(v is None or not math.isfinite(float(v)) for v in values):
        log.warning(f"{folder}: returned {ret.return_value}, not a number: the trial failed")
        told(study, trial, state=TrialState.FAIL)
        return False
    told(study, trial, [float(v) for v in values] if objectives > 1 else float(values[0]))
    return True


def told(study: optuna.Study, trial: optuna.Trial | int, *args: Any, **kwargs: Any) -> None:
    """`study.tell`, where a grid's last point does not fail the study: GridSampler then calls
    `study.stop()`, which raises outside `optimize` (Optuna's ask-and-tell caveat, optuna#5141);
    the trial is recorded all the same, and `run_study` asks for no point past the grid."""
    import optuna

    try:
        study.tell(trial, *args, **kwargs)
    except RuntimeError as e:
        grid = isinstance(study.sampler, optuna.samplers.GridSampler)
        if not (grid and "Study.stop" in str(e)):
            raise


def write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """<sweep dir>/optimization_results.yaml: the best trial so far (every trial is in the
    storage; `optuna-dashboard <storage URL>` shows them)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {
        s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
        for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    out: dict[str, Any] = {"name": "optuna", "study": study.study_name, "trials": counts}
    if done and len(study.directions) == 1:
        out.update(best_params=dict(study.best_params), best_value=study.best_value)
    elif done:
        out["best_trials"] = [{"params": t.params, "values": t.values} for t in study.best_trials]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(out)))
    log.info(
        f"best so far: {out.get('best_value', out.get('best_trials'))} "
        f"({counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed)"
    )


# --- the job's side: its trial -----------------------------------------------------------------


class JobTrial:
    """The trial a sweep job belongs to: it reports each epoch's validation value and asks
    the study's pruner whether to stop (through the storage, from any process)."""

    def __init__(
        self,
        study_name: str,
        storage_url: str,
        number: int,
        pruner: Any = None,
        reports: bool = True,
    ):
        self.study_name, self.storage_url, self.number = study_name, storage_url, number
        self.pruner = pruner  # the sweeper's (a study's pruner is not kept in its storage)
        self.reports = reports  # False with several objectives: Optuna takes no epoch's value
        self._trial: optuna.Trial | None = None

    @classmethod
    def of(cls, sweeper: Mapping[str, Any]) -> JobTrial | None:
        """The job's trial, when an Optuna sweeper with a storage launched it."""
        number = sweeper.get("trial")
        if number is None or not sweeper.get("storage"):
            return None
        found = sweeper.get("objectives")
        several = found is not None and not isinstance(found, str) and len(found) > 1
        return cls(
            sweeper["study_name"],
            sweeper["storage"],
            int(number),
            sweeper.get("pruner"),
            reports=not several,
        )

    def should_prune(self, step: int, value: float) -> bool:
        import optuna

        if not self.reports:
            return False
        if self._trial is None:
            pruner = optuna_object(self.pruner, "pruner", "pruners") or optuna.pruners.NopPruner()
            where = storage(self.storage_url)
            study = optuna.load_study(study_name=self.study_name, pruner=pruner, storage=where)
            study_id = where.get_study_id_from_name(self.study_name)
            trial_id = where.get_trial_id_from_study_id_trial_number(study_id, self.number)
            self._trial = optuna.Trial(study, trial_id)
        self._trial.report(float(value), step)
        return self._trial.should_prune()
