"""best_model/README.md as a Hugging Face model card (huggingface_hub's ModelCard).

The YAML metadata is what the Hub indexes: base_model, library_name, pipeline_tag, tags and a
model-index with every test metric on the test split. The body says how to load the folder
and how the run made it. Built from the resolved config and metrics.json alone, so any
finished run's card can be written again from its folder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from src.config.rundir import best_key
from src.models.backbones import PKG_SCHEME
from src.outputs.render import BOOTSTRAP, head_of, interval, selection, settings_table
from src.tasks.metrics import REGISTRY, average, task_of

if TYPE_CHECKING:
    from huggingface_hub import EvalResult, ModelCard

TASK = "text-classification"


def model_card(cfg: Mapping, metrics: Mapping) -> ModelCard:
    """The card of a run's best_model/: `cfg` is its resolved config, `metrics` its metrics.json
    (RunSummary.to_json), so the card reports what the run measured after scoring the test."""
    from huggingface_hub import ModelCard, ModelCardData

    head = head_of(metrics)
    kind, name = dataset_of(cfg["dataset"])
    data = ModelCardData(
        base_model=base_model(cfg["backbone"]),
        library_name="transformers",  # save_pretrained files; custom_head: see the body
        pipeline_tag=TASK,
        tags=[TASK, head],
        model_name=f"{cfg['backbone']['name']}-{head}-{kind}",
        eval_results=eval_results(cfg, metrics, kind, name),
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body(cfg, metrics, head, name)}")


def base_model(backbone: Mapping) -> str | None:
    """The hub id the weights started from: `hub_id`, else `path` when it is one. None for random
    weights, a pkg:// or local folder: the Hub takes only model ids here."""
    if backbone["init"] == "random":
        return None
    if backbone.get("hub_id"):
        return backbone["hub_id"]
    path = backbone["path"]
    return None if path.startswith(PKG_SCHEME) or Path(path).exists() else path


def dataset_of(dataset: Mapping) -> tuple[str, str]:
    """(type, name) for the model-index: the dataset option (its class in snake_case), and the
    files it read, if any."""
    if dataset.get("path"):  # dataset=hf: its hub id (or builder, or folder) and configuration
        hub = dataset["path"] if dataset.get("data_files") is None else str(dataset["data_files"])
        return dataset["path"], hub + (f" ({dataset['name']})" if dataset.get("name") else "")
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", dataset["_target_"].rsplit(".", 1)[-1]).lower()
    files = [dataset[k] for k in ("train_file", "test_file") if dataset.get(k)]
    return kind, " + ".join(map(str, files)) or kind


def eval_results(cfg: Mapping, metrics: Mapping, kind: str, name: str) -> list[EvalResult]:
    """Every test metric on the test split; the best validation value of the metric that chose
    the epoch too, when a validation split chose it (a test-split choice is no separate result)."""
    from huggingface_hub import EvalResult

    common = {"task_type": TASK, "dataset_type": kind, "dataset_name": name}
    average_of = {"average": average(len(metrics["label_names"]))}

    def args(metric: str) -> dict | None:  # how precision, recall and F1 pooled the labels
        return average_of if metric in REGISTRY and REGISTRY[metric].pools_labels else None

    results = [
        EvalResult(
            **common,
            dataset_split="test",
            metric_type=m,
            metric_value=float(v),
            metric_name=f"test {m}",
            metric_args=args(m),
        )
        for m, v in metrics["test"].items()
    ]
    metric = cfg["trainer"]["metric_for_best_model"]
    best = metrics.get(best_key(metric))
    if metrics["eval_split"] == "validation" and best is not None:
        results.append(
            EvalResult(
                **common,
                dataset_split="validation",
                metric_type=metric,
                metric_value=float(best),
                metric_name=f"best validation {metric}",
                metric_args=args(metric),
            )
        )
    return results


def body(cfg: Mapping, metrics: Mapping, head: str, dataset: str) -> str:
    """Usage (the load snippet and src.predict), the test metrics, the settings that made it."""
    task = task_of(metrics)
    labels = _labels_line(task, metrics)
    backbone, cut = cfg["backbone"], (cfg["max_length"], cfg["truncation"])
    lines = [
        f"# {backbone['name']} text classifier ({head})",
        "",
        _origin(backbone, dataset, metrics["n_train"]),
        "",
        f"{labels} Trained on {cut[0]} word pieces per text, `{cut[1]}` truncation.",
        "",
        "## Usage",
        "",
        _LOAD[head].replace(_PIPELINE_CALL, _CALL[task]),
        "",
        _PREDICT.format(truncation=cut[1]),
        *(
            [_PAIRS.format(column=cfg["dataset"]["text_pair_column"]), ""]
            if cfg["dataset"].get("text_pair_column")
            else []
        ),
        *([_LIBRARY, ""] if head == "custom_head" else []),
        f"## Test metrics ({metrics['n_test']} texts)",
        "",
        "| metric | value | 95% interval |",
        "|---|---|---|",
        *(
            f"| {m} | {v:.4f} | {interval(metrics['test_ci95'].get(m))} |"
            for m, v in metrics["test"].items()
        ),
        "",
        f"Intervals: {BOOTSTRAP}."
        + (
            f" Precision, recall and F1: {_pooling(metrics['label_names'])}."
            if task == "single_label"
            else ""
        ),
        "",
        selection(cfg, metrics),
        "",
        "## Training settings",
        "",
        *settings_table(cfg, metrics),
        "",
    ]
    return "\n".join(lines)


def _origin(backbone: Mapping, dataset: str, n_train: int) -> str:
    data = f"on `{dataset}` ({n_train} training texts)"
    if backbone["init"] == "random":
        where = f"`backbone.init=random`, config from `{backbone['path']}`"
        return f"Trained from random weights ({where}) {data}: no base model."
    base = base_model(backbone)
    if base is None:
        return f"`{backbone['path']}` fine-tuned {data} (no hub id; `backbone.hub_id` names one)."
    return f"[{base}](https://huggingface.co/{base}) fine-tuned {data}."


def _labels_line(task: str, metrics: Mapping) -> str:
    """What the model outputs, by task."""
    names = metrics["label_names"]
    listed = ", ".join(f"{i}={n}" for i, n in enumerate(names))
    if task == "regression":
        return (
            f"Regression: one output, `{names[0]}` in its own units (`problem_type: regression`)."
        )
    if task == "multi_label":
        threshold = (metrics.get("task") or {}).get("threshold", 0.5)
        return (
            f"Multi-label: one sigmoid per label ({listed}); a label is predicted when its "
            f"probability reaches {threshold} (`multi_label_classification`)."
        )
    return f"Labels: {listed}."


def _pooling(label_names: list[str]) -> str:
    if average(len(label_names)) == "binary":
        return f"of the positive label, `{label_names[1]}`"
    return "the unweighted mean over labels (macro)"


_LOAD = {
    "hf_head": """Load it with transformers alone (`truncation=True` keeps the first word pieces):

```python
from transformers import pipeline

classify = pipeline("text-classification", model="path/to/best_model")
classify("A gripping, beautifully acted film.", truncation=True, top_k=None)
```""",
    "custom_head": """An encoder with the project's own head (pooling -> dropout -> Linear;
`custom_head` in config.json), which transformers' Auto classes do not know. From the project
root:

```python
from transformers import AutoTokenizer

from src.models import load_trained

model = load_trained("path/to/best_model").eval()
tokenizer = AutoTokenizer.from_pretrained("path/to/best_model")
```""",
}
_PIPELINE_CALL = 'classify("A gripping, beautifully acted film.", truncation=True, top_k=None)'
_CALL = {  # what pipeline() returns, by task: each label's softmax or sigmoid, or the value
    "single_label": _PIPELINE_CALL,
    "multi_label": 'classify("A gripping, beautifully acted film.", truncation=True, top_k=None,'
    ' function_to_apply="sigmoid")',
    "regression": 'classify("A gripping, beautifully acted film.", truncation=True,'
    ' function_to_apply="none")',
}
_PREDICT = """To cut long texts exactly as in training (`{truncation}`), predict from the project
root:

```bash
python -m src.predict run_dir=path/to/run text="A gripping, beautifully acted film."
python -m src.predict run_dir=path/to/run input=reviews.csv
```
"""
_PAIRS = """A sentence-pair model: give each example's two texts, `pipeline()` as
`{{"text": ..., "text_pair": ...}}`, `src.predict` as `text=... text_pair=...` or, for a file,
`text_pair_column={column}` (max_length is shared: each text is cut to its share)."""
_LIBRARY = """`library_name: transformers` above says what the files are: `save_pretrained` output
(config.json, model.safetensors, tokenizer) of a transformers `PreTrainedModel`. It does not
mean `pipeline()` or `AutoModel*` can load it: config.json names `CustomHeadClassifier`, so the
Hub's transformers snippet and widget do not work for this model; use `load_trained` above."""
