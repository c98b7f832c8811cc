"""Backbones: where a pretrained (or randomly initialised) encoder and its tokenizer come from.

`path` is a local folder, a Hugging Face hub id, or `pkg://<package>/<folder>` for a model
shipped inside an installed Python package (the embedded default, usable offline).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from src.config.errors import UserError
from src.config.knobs import MIN_MAX_LENGTH
from src.config.schema import Spec, param
from src.models import encoders

PKG_SCHEME = "pkg://"
INITS = ("pretrained", "random")
# A Hugging Face model id, `name` or `owner/name` (huggingface_hub's validate_repo_id rule)
_NAME = r"(?![.-])[\w.-]{1,96}(?<![.-])"
_HUB_ID = re.compile(rf"^(?!.*(--|\.\.)){_NAME}(/{_NAME})?$")


def resolve_path(path: str) -> str:
    """Turn `pkg://package/sub/folder` into the installed folder; leave other paths as they are."""
    if not path.startswith(PKG_SCHEME):
        return path
    package, _, sub = path[len(PKG_SCHEME) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"backbone.path={path}: package '{package}' is not installed "
            f"(pip install {package.replace('_', '-')})"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    if not folder.is_dir():
        raise UserError(f"backbone.path={path}: no folder {folder}; reinstall {package}")
    return str(folder)


def _is_location(path: Any) -> bool:
    """A pkg:// path, a folder that exists, or what the hub could serve: any other path fails
    in validation, not after the hub client's retries."""
    if not isinstance(path, str) or not path:
        return False
    return path.startswith(PKG_SCHEME) or Path(path).is_dir() or bool(_HUB_ID.match(path))


def local_config(backbone: Mapping) -> dict[str, Any] | None:
    """The backbone's config.json with its config_overrides, where it can be read without the
    network: a folder, a pkg:// path, or a hub id already in the local HF cache (None: not)."""
    path = backbone["path"]
    try:
        folder = Path(resolve_path(path))
        config_file = folder / "config.json"
        if not config_file.is_file() and _HUB_ID.match(path) and not folder.is_dir():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(path, "config.json")
            config_file = Path(cached) if isinstance(cached, str) else config_file
        if not config_file.is_file():
            return None
        return {**json.loads(config_file.read_text()), **(backbone.get("config_overrides") or {})}
    except (OSError, ValueError, UserError):
        return None


def config_value(backbone: Mapping, key: str) -> Any:
    """A config.json key of the backbone, its overrides applied (None: unknown offline)."""
    return (local_config(backbone) or {}).get(key)


def position_limit(backbone: Mapping) -> int | None:
    """The longest input the backbone's positions allow (src.models.encoders: RoBERTa's offset
    counted), when its config.json can be read (None: a hub id not in the cache)."""
    config = local_config(backbone)
    return encoders.position_limit(config) if config else None


@contextlib.contextmanager
def _hub_quiet() -> Iterator[None]:
    """huggingface_hub's warnings held back (its retries while the network does not answer):
    a failure becomes one line of ours."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _is_plain(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, str | int | float | bool)


@dataclass(frozen=True)
class Backbone(Spec):
    """An encoder checkpoint plus how to initialise it."""

    name: str = param(MISSING, "a name for logs and reports")
    path: str = param(
        MISSING,
        "a local folder, a hub id, or pkg://<package>/<folder>",
        test=_is_location,
        allowed="an existing folder, a hub id (name or owner/name) or pkg://<package>/<folder>",
    )
    lr: float = param(
        MISSING, "the peak learning rate for this checkpoint's size (the lr knob reads it)", gt=0
    )
    max_length: int = param(
        MISSING,
        "word pieces per text, [CLS] and [SEP] in, this checkpoint reads (the "
        "max_length knob reads it)",
        ge=MIN_MAX_LENGTH,
    )
    hub_id: str | None = param(
        None, "the hub id of these weights (the model card's base_model); null: path, if one"
    )
    init: str = param("pretrained", "pretrained weights, or random (for tests)", choices=INITS)
    hidden_dropout: float | None = param(
        None,
        "the hidden dropout (hidden_dropout_prob, or the family's keys: "
        "src/models/encoders.py); null: the checkpoint's",
        ge=0,
        lt=1,
    )
    attention_dropout: float | None = param(
        None,
        "the attention dropout (attention_probs_dropout_prob, or the family's keys); null: "
        "the checkpoint's (0 lets SDPA fuse on CPU)",
        ge=0,
        lt=1,
    )
    config_overrides: Mapping[str, Any] = param(
        {},
        "config.json keys to change, e.g. attention_probs_dropout_prob",
        test=lambda v: isinstance(v, Mapping) and all(_is_plain(x) for x in v.values()),
        allowed="a mapping of config.json keys to plain values",
    )
    freeze_layers: int = param(
        0,
        "freeze the embeddings (and what else runs before layer 0) and the lower N layers "
        "(no gradients, no dropout)",
        ge=0,
    )
    cache_frozen: bool = param(
        False, "compute the frozen layers' output once per example and reuse it every epoch"
    )

    def check(self, plain: Mapping[str, Any]) -> None:
        """The max_length knob against this checkpoint's positions; the frozen cache against an
        eager forward; each lever against this encoder (src.models.encoders), where its config.json
        can be read without the network (a hub id not in the cache: build checks it)."""
        limit = position_limit(plain["backbone"])
        if limit is not None and plain["max_length"] > limit:
            raise UserError(
                f"max_length={plain['max_length']}: an integer from {MIN_MAX_LENGTH} to {limit} "
                f"(the positions of backbone {self.name} allow {limit})"
            )
        if self.cache_frozen and not self.freeze_layers:
            raise UserError(
                "backbone.cache_frozen=true: nothing is frozen to cache; set "
                "backbone.freeze_layers to 1 or more"
            )
        config = local_config(plain["backbone"])
        if config is not None:
            model = plain["model"]
            encoders.check_levers(
                config,
                plain["backbone"],
                model.get("lora") if model.get("peft") == "lora" else None,
            )

    @property
    def location(self) -> str:
        return resolve_path(self.path)

    def tokenizer(self):
        """The checkpoint's tokenizer, without segment ids where the encoder reads none
        (src.models.encoders: RoBERTa, DistilBERT, DeBERTa-v3, ModernBERT), also once saved."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.location)
        except OSError as e:
            raise UserError(self._load_hint(e)) from None
        names = tokenizer.model_input_names
        takes = encoders.takes_token_types(self.config().to_dict())
        if "token_type_ids" in names and takes is False:
            names = [n for n in names if n != "token_type_ids"]
            tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = names
        return tokenizer

    def config(self, **extra: Any):
        """The model config with this backbone's dropout knobs (the family's keys:
        src.models.encoders), then its config_overrides and the caller's extras applied."""
        from transformers import AutoConfig

        try:
            with _hub_quiet():  # offline: its retry warnings, then our one line
                config = AutoConfig.from_pretrained(self.location)
        except (OSError, ValueError) as e:  # ValueError: a folder with no model_type to read
            raise UserError(self._load_hint(e)) from None
        plain = {**config.to_dict(), **self.config_overrides}
        dropouts = encoders.dropout_overrides(plain, self.hidden_dropout, self.attention_dropout)
        for key, value in {**dropouts, **self.config_overrides, **extra}.items():
            setattr(config, key, value)
        return config

    def reach(self) -> None:
        """The checkpoint's config.json, where `config` will read it, checked with huggingface_hub
        alone (no torch): a folder's own, or a hub id's, fetched into the local HF cache as
        transformers would fetch it. An unreachable backbone is one line in about a second, before
        the data or a library loads (src.sweeps.job)."""
        if local_config({"path": self.path}) is not None:
            return
        if not _HUB_ID.match(self.path) or Path(self.path).exists():
            self.config()  # a folder whose config.json is missing or unreadable: transformers says
            return
        from huggingface_hub import hf_hub_download

        try:
            with _hub_quiet():  # offline: its retry warnings, then our one line
                hf_hub_download(self.path, "config.json")
        except OSError as e:
            raise UserError(self._load_hint(e)) from None

    def load(self, auto_class, **config_extra: Any):
        """Build `auto_class` (e.g. AutoModel) from this backbone: pretrained weights or random."""
        config = self.config(**config_extra)
        if self.init == "random":
            return auto_class.from_config(config)
        try:
            return auto_class.from_pretrained(self.location, config=config)
        except OSError as e:
            raise UserError(self._load_hint(e)) from None

    def _load_hint(self, error: Exception) -> str:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if _HUB_ID.match(self.path) and not Path(self.path).exists():
            return (
                f"backbone.path={self.path}: not in the local HF cache, and the hub did not "
                f"answer ({first}); a hub checkpoint needs the network once, then loads from "
                "the cache; offline, point backbone.path at a local copy or use backbone=minilm "
                "(embedded)"
            )
        return (
            f"backbone.path={self.path}: cannot load it ({first}). Offline, point "
            "backbone.path at a local model folder or use backbone=minilm (embedded)."
        )
