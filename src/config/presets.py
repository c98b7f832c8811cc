"""Every preset of a conf/ folder composed, resolved and validated, as JSON:

    python -m src.config.presets [--conf CONF]

The presets: the default composition, each conf/experiment/*, conf/debug/* and
conf/hparams_search/* (with its search space, `hydra.sweeper`). For each one: its resolved
config, the conf/ files and declarations its composition reads, the line `python -m src.run`
would print if it does not validate (relative data paths from the working directory), or the
line composing it failed with. src.review runs it in each
revision's own tree, in a process of its own, so that a revision composes its conf/ with its
own code and nothing of one revision is loaded into another's process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from src.config import declared
from src.config.compose import CONF, compose, sources
from src.config.errors import UserError, one_line
from src.config.validation import validate

PRESET_GROUPS = ("experiment", "debug", "hparams_search")
SWEEP_GROUP = "hparams_search"  # its presets add their search space: hydra.sweeper.*


def names(conf: Path) -> dict[str, list[str]]:
    """Preset name -> its overrides: `default`, then each option of PRESET_GROUPS."""
    out: dict[str, list[str]] = {"default": []}
    for group in PRESET_GROUPS:
        for path in sorted((conf / group).rglob("*.yaml")):
            if not path.stem.startswith("_"):
                option = path.relative_to(conf / group).with_suffix("").as_posix()
                out[f"{group}/{option}"] = [f"{group}={option}"]
    return out


def resolve(overrides: list[str], conf: Path) -> dict[str, Any]:
    """The composed config as a run resolves it, without Hydra's node; a search-space preset
    keeps its sweeper (`hydra.sweeper`: the space, direction, trials)."""
    sweep = any(o.startswith(f"{SWEEP_GROUP}=") for o in overrides)
    cfg = compose(overrides, conf=conf, hydra=sweep)
    plain = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
        if k != "hydra"
    }
    if sweep:
        plain["hydra"] = {"sweeper": OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)}
    return plain


def preset(overrides: list[str], conf: Path) -> dict[str, Any]:
    """One preset: {config, files, invalid} or {error} when it does not compose."""
    try:
        plain = resolve(overrides, conf)
        files = [
            f"conf/{p}.yaml" if (conf / f"{p}.yaml").is_file() else p
            for p in sources(overrides, conf)
        ]
    except Exception as e:  # a conf/ that does not compose: its line, reported
        return {"error": first_line(e)}
    try:
        validate({k: v for k, v in plain.items() if k != "hydra"})
        invalid = ""
    except UserError as e:
        invalid = one_line(e)
    return {"config": plain, "files": files, "invalid": invalid}


def first_line(error: BaseException) -> str:
    """Hydra's message on one line (it names the file, then the option it missed)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text or type(error).__name__)[:400]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.config.presets")
    parser.add_argument("--conf", type=Path, default=CONF, help="a conf/ folder (default: ours)")
    parser.add_argument(
        "--declared",
        type=Path,
        help="a JSON file of declarations to compose "
        "with (a revision from before conf/declared/: its code's)",
    )
    args = parser.parse_args(argv)
    if args.declared:
        stored(json.loads(args.declared.read_text()))
    conf = args.conf.resolve()
    found = {name: preset(overrides, conf) for name, overrides in names(conf).items()}
    json.dump({"presets": found}, sys.stdout, default=str)


def stored(nodes: dict[str, Any]) -> None:
    """A revision from before conf/declared/ composed its declarations from Hydra's
    ConfigStore: its nodes stored there, in this process alone, for its conf/ to compose."""

    for name, node in nodes.items():
        ConfigStore.instance().store(group=declared.GROUP, name=name, node=node)


if __name__ == "__main__":
    main(sys.argv[1:])
