"""Mean negative log-likelihood of response tokens under a causal LM.

This is the only module that imports torch; only `mosaic-it select` loads it, so the
mosaic pipeline runs without torch installed.
"""
from __future__ import annotations

import inspect
from typing import Sequence

import torch
import torch.nn.functional as F


def resolve_device(option: str) -> str:
    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return option


def resolve_dtype(option: str, device: str) -> str:
    """`auto`: bfloat16 on a GPU that supports it, else float32."""
    if option != "auto":
        return option
    return "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def mean_response_nll(logits: torch.Tensor, targets: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """Per row b, the mean of -log softmax(logits[i])[targets[i]] over the predictions of row b.

    `tail` (rows, n) marks each row's scored predictions; `logits` (tail.sum(), vocabulary) and
    `targets` hold them row by row, in order. Computed in float32.
    """
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    per_row = torch.zeros(tail.shape, dtype=nll.dtype, device=nll.device)
    per_row[tail] = nll
    return per_row.sum(-1) / tail.sum(-1)


class ResponseLosses:
    """A causal LM that gives the mean NLL of the last n tokens of each sequence."""

    def __init__(self, model, device: str):
        self.model = model
        self.device = device
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.flat_logits = self.keeps_logits and self._computes_masked_logits()

    @classmethod
    def load(cls, name: str, revision: str | None, device: str, dtype: str) -> "ResponseLosses":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype))
        return cls(model.to(device).eval(), device)

    @torch.inference_mode()
    def _computes_masked_logits(self) -> bool:
        """Whether the model takes a boolean (batch, position) `logits_to_keep` and returns only
        those positions' logits, flattened (recent transformers). Older models get the last
        positions of every row instead, and the scorer drops the padding's logits itself."""
        ids = torch.ones((1, 2), dtype=torch.long, device=self.device)
        keep = torch.tensor([[True, False]], device=self.device)
        try:
            logits = self.model(input_ids=ids, attention_mask=ids, position_ids=ids - 1, logits_to_keep=keep).logits
        except (TypeError, IndexError, RuntimeError, ValueError):
            return False
        return logits.dim() == 2 and logits.shape[0] == 1

    @torch.inference_mode()
    def mean_nll(self, sequences: Sequence[tuple[Sequence[int], int]]) -> list[float]:
        """(token ids, n) -> mean NLL of the last n tokens given the ones before them.

        Sequences are left-padded to a common end, with explicit position ids, so the
        response positions line up at the end of the batch; the vocabulary projection and
        the softmax run on the response positions only (the largest share of the work for
        a small model with a large vocabulary).
        """
        width = max(len(ids) for ids, _ in sequences)
        scored = max(n for _, n in sequences)
        ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(sequences):
            ids[row, width - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
            attention[row, width - len(tokens):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        counts = torch.tensor([n for _, n in sequences])
        # tail[b, j]: the j-th of the last `scored` tokens of row b is a scored response token.
        tail = torch.arange(scored).unsqueeze(0) >= (scored - counts).unsqueeze(1)
        predicts = torch.zeros((len(sequences), width), dtype=torch.bool)  # positions whose logits predict them
        predicts[:, width - scored - 1:-1] = tail
        ids, attention, positions = ids.to(self.device), attention.to(self.device), positions.to(self.device)
        tail, predicts = tail.to(self.device), predicts.to(self.device)
        logits = self._logits_at(ids, attention, positions, predicts, scored)
        return mean_response_nll(logits, ids[:, -scored:][tail], tail).cpu().tolist()

    def _logits_at(self, ids, attention, positions, predicts: torch.Tensor, scored: int) -> torch.Tensor:
        """The logits of the positions `predicts` marks, row by row: (predicts.sum(), vocabulary)."""
        inputs = {"input_ids": ids, "attention_mask": attention, "position_ids": positions}
        if self.flat_logits:
            return self.model(**inputs, logits_to_keep=predicts).logits
        extra = {"logits_to_keep": scored + 1} if self.keeps_logits else {}
        logits = self.model(**inputs, **extra).logits
        return logits[:, -(scored + 1):][predicts[:, -(scored + 1):]]
