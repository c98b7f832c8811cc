"""The notebook's custom head as a torch module (its config, CustomHead: src/models/)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import SequenceClassifierOutput

from src.config.errors import UserError


class CustomHeadClassifier(nn.Module):
    """The notebook's second model: encoder -> pooled vector -> dropout -> Linear.

    The Linear is Xavier-uniform with a zero bias. `cls` pooling is the notebook's
    `last_hidden_state[:, 0]`; `mean` averages the unpadded tokens.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float, pooling: str = "cls"):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: the head pools itself (and DDP rejects unused weights)
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    @property
    def config(self):
        return self.encoder.config

    @property
    def base_model(self) -> nn.Module:
        """The encoder, as transformers names a classifier's (src.models.frozen freezes it)."""
        return self.encoder

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """`inputs_embeds`: what the encoder's first layer reads in place of `input_ids`' (the
        frozen cache's stored rows, src.models.frozen)."""
        given = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {}
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            **given,
        ).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        # transformers' own loss for the config's problem_type (cross-entropy, BCE or MSE),
        # as hf_head computes it
        loss = (
            None if labels is None else ForSequenceClassificationLoss(labels, logits, self.config)
        )
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json (the encoder's, plus the head) and model.safetensors, like transformers."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.encoder.config
        config.architectures = [type(self).__name__]  # src.models.CUSTOM_HEAD_ARCH
        config.custom_head = {"pooling": self.pooling, "dropout": self.dropout.p}
        config.save_pretrained(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> CustomHeadClassifier:
        config = AutoConfig.from_pretrained(folder)
        head = getattr(config, "custom_head", None)
        if not head:
            raise UserError(
                f"{folder}: config.json has no custom_head entry; not a custom_head model"
            )
        model = cls(
            AutoModel.from_config(config), config.num_labels, head["dropout"], head["pooling"]
        )
        model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
        return model
