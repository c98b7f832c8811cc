"""Batches that pad little: `trainer.group_by_length` groups training examples of similar
length (each example still once an epoch, the order a function of seed and epoch), and
prediction runs longest first, its rows put back in dataset order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src import data
from src.trainers.build import build
from src.trainers.common import length_grouped
from src.trainers.loggers import NullLogger
from src.trainers.manual import ManualTrainer
from tests.conftest import PAIRS, compose, reloaded_and_saved_probs, tokenizer_of, trainer_config

GROUPED = ("trainer.group_by_length=true",)  # the default; the tiny runs might pin it off


def padded(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


def chunk_like_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Most windows full (256), every fourth or so a text's short last one: chunks' shape."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(n) < 0.75, 256, rng.integers(8, 256, n))


def test_length_grouped_keeps_every_example_once_and_pads_less():
    lengths = chunk_like_lengths(1003)
    order = np.random.default_rng(1).permutation(1003).tolist()
    grouped = length_grouped(order, lengths, 16, np.random.default_rng(2))
    assert sorted(grouped) == list(range(1003))
    batches = [grouped[i : i + 16] for i in range(0, 1003, 16)]
    assert len(batches[-1]) == 1003 % 16  # the partial batch stays last
    assert padded(batches, lengths) < 0.95 * padded(
        [order[i : i + 16] for i in range(0, 1003, 16)], lengths
    )
    assert padded(batches, lengths) < 1.03 * lengths.sum()  # random batches: ~1.1
    again = length_grouped(order, lengths, 16, np.random.default_rng(2))
    assert again == grouped


def test_manual_batches_are_grouped_and_a_function_of_seed_and_epoch():
    lengths = chunk_like_lengths(500)
    examples = data.Encoded(
        ids=np.zeros(int(lengths.sum()), np.int32),
        lengths=lengths.astype(np.int32),
        doc=np.arange(500, dtype=np.int32),
    )
    plain = ManualTrainer(trainer_config("manual", batch_size=16, group_by_length=False))
    loop = ManualTrainer(trainer_config("manual", batch_size=16, group_by_length=True))
    epoch1 = loop._batches(examples, 1)
    assert sorted(i for b in epoch1 for i in b) == list(range(500))
    assert epoch1 == loop._batches(examples, 1)  # what a resumed run skips through
    assert epoch1 != loop._batches(examples, 2)
    assert padded(epoch1, lengths) < 0.95 * padded(plain._batches(examples, 1), lengths)


def test_hf_trainer_gets_transformers_length_grouped_sampler(tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from src.trainers.hf import HFTrainer

    args = HFTrainer(trainer_config("hf", group_by_length=True))._args(tmp_path)
    built = build(compose([*PAIRS["hf_head", "hf"], *GROUPED]), NullLogger())
    from transformers import Trainer

    trainer = Trainer(
        model=built.model,
        args=args,
        data_collator=built.collator,
        train_dataset=built.encoded["train"],
        eval_dataset=built.encoded["eval"],
    )
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)


class _Echo(torch.nn.Module):
    """A model whose logits name its input: (length, first word piece)."""

    def forward(self, input_ids, attention_mask, **_):
        from types import SimpleNamespace

        rows = torch.stack([attention_mask.sum(1), input_ids[:, 0]], 1)
        return SimpleNamespace(logits=rows.float())


def test_prediction_rows_come_back_in_dataset_order():
    """Longest-first batches, rows back in dataset order: each row names its own example."""
    lengths = chunk_like_lengths(203).astype(np.int32)
    examples = data.Encoded(
        ids=np.arange(int(lengths.sum()), dtype=np.int32),
        lengths=lengths,
        doc=np.arange(203, dtype=np.int32),
    )
    loop = ManualTrainer(trainer_config("manual", eval_batch_size=16, precision="fp32"))
    tokenizer = tokenizer_of()
    got = loop.predict(_Echo(), examples, data.collator(tokenizer))
    np.testing.assert_array_equal(got[:, 0], lengths)
    np.testing.assert_array_equal(got[:, 1], examples.starts)


@pytest.mark.parametrize("model", ["hf_head", "custom_head"])
def test_prediction_longest_first_gives_dataset_order_rows(model):
    """Logits from the longest-first batches equal each example's own forward, in order."""
    built = build(compose([*PAIRS[model, "manual"]]), NullLogger())
    texts = [
        "a film",
        "a long and rather slow film about a river and a town " * 3,
        "bad",
        "the best film of the year, and the longest one too",
        "fine " * 20,
    ]
    encoded = data.encode_texts(built.tokenizer, texts, 64, "head").with_labels([0] * 5)
    loop = ManualTrainer(trainer_config("manual", eval_batch_size=2, precision="fp32"))
    got = loop.predict(built.model, encoded, built.collator)
    with torch.no_grad():
        alone = [
            built.model(**{k: v for k, v in built.collator([e]).items() if k != "labels"})
            .logits[0]
            .numpy()
            for e in encoded
        ]
    np.testing.assert_allclose(got, np.stack(alone), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("model", "trainer"), [("custom_head", "manual"), ("hf_head", "hf")])
def test_grouped_runs_train_and_score(trained, model, trainer):
    """A grouped run finishes under both trainers, and its reloaded model gives the test
    predictions it wrote."""
    run = trained(*PAIRS[model, trainer], *GROUPED)
    cfg = compose([*PAIRS[model, trainer], *GROUPED])
    reloaded, saved = reloaded_and_saved_probs(run, cfg)
    np.testing.assert_allclose(reloaded, saved, atol=1e-4)
