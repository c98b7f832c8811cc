"""The command line's edge, shared by every `python -m src.<command>`: how arguments are read,
and where a user's mistake becomes one line (src.config.errors.reported).

    key_values(argv, DEFAULTS)    # src.predict, src.export: plain key=value, as typed
    ArgumentParser(...)           # src.compare, src.sweeps.summary, src.review: argparse, one line
    hydra_command_line(argv)      # src.run, src.evaluate: Hydra's flags apart from overrides
    writable_file(path, key)      # an output checked before the work that fills it
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from src.config.errors import UserError
from src.config.rundir import unwritable_reason


def key_values(argv: Sequence[str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`key=value` arguments over `defaults` (the keys a command takes); a value is taken as
    typed, commas, quotes and brackets included. An unknown key is one line listing them."""
    args = dict(defaults)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in defaults:
            raise UserError(f"{arg}: expected key=value with key one of {', '.join(defaults)}")
        args[key] = value
    return args


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (src.config.errors.reported prints it, exit 2), not a
    usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (--help lists the arguments)")


# Hydra's command-line flags as `--hydra-help` lists them (hydra-core 1.3): (names, what follows
# a flag). tests/test_commands.py checks the list against what Hydra prints.
HYDRA_FLAGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--help", "-h"), {"action": "store_true"}),
    (("--hydra-help",), {"action": "store_true"}),
    (("--version",), {"action": "store_true"}),
    (("--cfg", "-c"), {"choices": ("job", "hydra", "all")}),
    (("--resolve",), {"action": "store_true"}),
    (("--package", "-p"), {}),
    (("--run", "-r"), {"action": "store_true"}),
    (("--multirun", "-m"), {"action": "store_true"}),
    (("--shell-completion", "-sc"), {"action": "store_true"}),
    (("--config-path", "-cp"), {}),
    (("--config-name", "-cn"), {}),
    (("--config-dir", "-cd"), {}),
    (("--experimental-rerun",), {}),
    (
        ("--info", "-i"),
        {
            "nargs": "?",
            "const": "all",
            "choices": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
        },
    ),
)


def hydra_command_line(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Hydra's flags (`--cfg job`, `-p hydra.sweeper`, `--info`, `-m`, ...) and the overrides,
    read apart, so that a flag's value is never taken for an override. Our own `--dry-run` is
    left out of both. A command line Hydra will refuse (or `--version`) comes back as running
    nothing: Hydra then says it in its words."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for names, kwargs in HYDRA_FLAGS:
        parser.add_argument(*names, **kwargs)
    parser.add_argument("overrides", nargs="*")

    def refuse(message: str) -> NoReturn:
        raise argparse.ArgumentError(None, message)

    parser.error = refuse  # type: ignore[method-assign]  (Hydra prints its own usage line)
    words = [a for a in argv if a != "--dry-run"]
    nothing = argparse.Namespace(
        help=True,
        hydra_help=None,
        cfg=None,
        info=None,
        resolve=False,
        package=None,
        shell_completion=None,
        multirun=False,
        overrides=[],
    )
    try:
        flags = parser.parse_args(words)
    except argparse.ArgumentError:
        return nothing, []
    if flags.version:
        return nothing, []
    modes = [
        f
        for f, on in (
            ("--run", flags.run),
            ("--multirun", flags.multirun),
            ("--cfg", flags.cfg),
            ("--info", flags.info is not None),
            ("--shell-completion", flags.shell_completion),
        )
        if on
    ]
    if len(modes) > 1:  # Hydra's own rule, said in one line rather than its ValueError
        raise UserError(
            f"{' '.join(modes)}: Hydra takes one of --run, --multirun, --cfg, --info and "
            "--shell-completion; the jobs a sweep would run: -m ... --dry-run"
        )
    return flags, list(flags.overrides or [])


_SPECIAL = set(" =,[]{}()'\"")  # what Hydra's override grammar reads as more than text


def quote_paths(overrides: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Overrides whose value is a path (`run_dir=`, `resume=`) quoted where Hydra's grammar
    would read the path as more than text: a sweep job's folder is named `0_lr=1e-4,seed=2`,
    and typed as it is shown, it would be an error (`=`) or a sweep (`,`). Folders that each
    exist, listed with commas where their whole is none (`-m run_dir=a,b`), stay a sweep."""
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        quoted = value[:1] in ("'", '"') and value[-1:] == value[:1]
        listed = "," in value and not Path(value).exists()  # -m run_dir=a,b: a sweep of
        listed = listed and all(Path(part).exists() for part in value.split(","))  # folders
        if sep and key.lstrip("+~") in keys and not quoted and not listed and _SPECIAL & set(value):
            mark = "'" if "'" not in value else '"'
            escaped = value.replace(mark, "\\" + mark)
            override = f"{key}={mark}{escaped}{mark}"
        out.append(override)
    return out


def runs_a_job(flags: argparse.Namespace) -> bool:
    """Whether the command line runs anything (not --help, --cfg, --info or completion)."""
    shown = (flags.help, flags.hydra_help, flags.cfg, flags.info, flags.shell_completion)
    return not any(shown)


def other_configs(flags: argparse.Namespace) -> bool:
    """Whether the command line adds or swaps config folders (--config-dir, -cp, -cn)."""
    return any(getattr(flags, k, None) for k in ("config_path", "config_name", "config_dir"))


def search_path(flags: argparse.Namespace) -> list[str]:
    """`--config-dir DIR` (`-cd`) as the override Hydra's compose API takes, so that what is
    composed before Hydra starts (--dry-run, a study's checks) sees DIR's configs too."""
    folder = getattr(flags, "config_dir", None)
    return [f"hydra.searchpath=[file://{Path(folder).resolve()}]"] if folder else []


def writable_file(path: Path, key: str) -> None:
    """An output file that can be written, checked before the work that fills it."""
    if path.is_dir():
        raise UserError(f"{key}={path}: a folder; name a file")
    if reason := unwritable_reason(path.parent):
        raise UserError(f"{key}={path}: {reason}; choose a writable place")
