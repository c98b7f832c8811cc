"""`logger=wandb`: one Weights & Biases run per run folder.

`logger.mode=offline` needs no account and no network: the run is written under
`<run dir>/wandb/` and `wandb sync <run dir>/wandb/offline-run-*` uploads it later. Online
(the default) logs in as `wandb login` or WANDB_API_KEY says.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import OmegaConf

from src.config.errors import Preempted, UserError
from src.config.rundir import CONFIG_FILE, read_overrides
from src.trainers.loggers.mlflow import sweep_of

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
WANDB_DIR = "wandb"  # <run dir>/wandb: W&B's files for this run


class WandbLogger:
    """`logger=wandb`: the resolved config as the run's config; the tags of src.trainers.loggers at
    their steps; the test metrics and their 95% intervals in the run's summary; report.md's
    images as images and the run's files as an artifact. A sweep's jobs share one group (the
    sweep folder), so W&B compares them side by side. The run starts on first use, so one that
    fails while it is built leaves no W&B run."""

    HELP: ClassVar[dict[str, str]] = {  # each argument's help line (`python -m src.spec logger`)
        "project": "the W&B project",
        "entity": "your team; null: your default entity",
        "mode": "online (after `wandb login`) | offline: no account, files under <run dir>/wandb "
        "(`wandb sync` uploads them) | disabled",
        "group": "null: the sweep folder for a sweep's jobs, none for a single run",
    }

    def __init__(
        self,
        run_dir: Path,
        project: str = "bert-sweeps",
        entity: str | None = None,
        mode: str = "online",
        group: str | None = None,
    ) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise UserError("logger=wandb needs the wandb package: pip install wandb")
        if mode not in MODES:
            raise UserError(f"logger.mode={mode}: one of {', '.join(MODES)}")
        self.run_dir, self.project, self.entity, self.mode = Path(run_dir), project, entity, mode
        self.group = group or sweep_of(self.run_dir)
        if mode == "online":  # before any weights load: a missing login is one line
            _check_login()
        self._run: Any = None
        self._ended = False

    @property
    def run(self) -> Any:
        if self._run is None:
            import wandb

            config_file = self.run_dir / CONFIG_FILE
            config = (
                OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.is_file() else {}
            )
            self.run_dir.joinpath(WANDB_DIR).mkdir(parents=True, exist_ok=True)
            self._run = wandb.init(
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                group=self.group,
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config=config,
                notes=" ".join(read_overrides(self.run_dir)) or None,
                reinit="create_new",
            )
            log.info(f"wandb: run {self._run.id} ({self.mode}) in project {self.project!r}")
        return self._run

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=step)

    def finish(self, metrics: Mapping[str, Any], artifacts: Sequence[Path] = ()) -> None:
        """The test metrics and intervals (summary), the report's images, the files."""
        import wandb

        summary = {f"test/{k}": v for k, v in metrics.get("test", {}).items()}
        for name, (low, high) in metrics.get("test_ci95", {}).items():
            summary[f"test/{name}_ci95_low"], summary[f"test/{name}_ci95_high"] = low, high
        summary["best_epoch"] = metrics.get("best_epoch")
        self.run.summary.update(summary)
        images = {
            f"report/{p.stem}": wandb.Image(str(p))
            for p in artifacts
            if p.suffix == ".png" and p.is_file()
        }
        if images:
            self.run.log(images)
        files = [p for p in artifacts if p.is_file()]
        if files:
            artifact = wandb.Artifact(f"run-{self.run.id}", type="run-files")
            for path in files:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=0)
        self._ended = True

    def close(self) -> None:
        """End a run `finish` did not: exit code 1 on an exception (the W&B run is marked
        failed), 0 without one."""
        if self._run is None or self._ended:
            return
        error = sys.exc_info()[1]
        self._ended = True
        try:
            code = (
                0
                if error is None
                else (255 if isinstance(error, KeyboardInterrupt | Preempted) else 1)
            )
            self._run.finish(exit_code=code)
        except Exception as e:  # never hide the exception that ended the run
            log.warning(f"wandb: could not finish run {self._run.id}: {e}")


def _check_login() -> None:
    """wandb's own check of the credentials it would use (WANDB_API_KEY, ~/.netrc, a login
    prompt on a terminal), without a request to the server."""
    import wandb

    try:
        wandb.login(verify=False)
    except wandb.errors.UsageError as e:
        raise UserError(
            f"logger=wandb: no W&B login ({str(e).splitlines()[0]}); run `wandb login`, set "
            "WANDB_API_KEY, or log without an account: logger.mode=offline (WANDB_MODE=offline)"
        ) from None
