"""tasks: what a label is, and how predictions are scored (`task=single_label|multi_label|
regression`).

A task (`task`) reads a data file's labels, says what the model is trained to output and with
which loss, turns logits into predictions and names its metrics; `metrics` computes them (with
bootstrap intervals and paired tests) and `inference` turns every example's logits into one row
per document (a text's windows pooled), the one path every prediction takes. It imports
`src.config` only; no torch until a loss is built.
"""

from src.tasks.task import MultiLabel, Regression, SingleLabel, Task

__all__ = ["MultiLabel", "Regression", "SingleLabel", "Task"]  # the `_target_`s of conf/task/
