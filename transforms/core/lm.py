"""Mean negative log-likelihood of response tokens under a causal LM.

This is the only module that imports torch; only `mosaic-it select` loads it, so the
mosaic pipeline runs without torch installed.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

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


def masked_mean_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row, the mean of -log softmax(logits[b, j])[targets[b, j]] over the j where mask[b, j].

    `logits[b, j]` is the prediction of `targets[b, j]` (already shifted). Computed in float32.
    """
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")
    weights = mask.to(nll.dtype)
    return (nll * weights).sum(-1) / weights.sum(-1)


class ResponseLosses:
    """A causal LM that gives the mean NLL of the last n tokens of each sequence."""

    def __init__(self, model, device: str):
        self.model = model
        self.device = device
        # Only the logits of the response positions are needed; most models can skip the rest.
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @classmethod
    def load(cls, name: str, revision: str | None, device: str, dtype: str) -> ResponseLosses:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype))
        return cls(model.to(device).eval(), device)

    @torch.inference_mode()
    def mean_nll(self, sequences: Sequence[tuple[Sequence[int], int]]) -> list[float]:
        """(token ids, n) -> mean NLL of the last n tokens given the ones before them.

        Sequences are left-padded to a common end, with explicit position ids, so the
        response positions line up at the end of the batch.
        """
        width = max(len(ids) for ids, _ in sequences)
        scored = max(n for _, n in sequences)
        ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(sequences):
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            attention[row, width - len(tokens) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        ids, attention, positions = ids.to(self.device), attention.to(self.device), positions.to(self.device)
        extra = {"logits_to_keep": scored + 1} if self.keeps_logits else {}
        logits = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, **extra).logits
        logits = logits[:, -(scored + 1) : -1]
        counts = torch.tensor([n for _, n in sequences], device=self.device)
        mask = torch.arange(scored, device=self.device).unsqueeze(0) >= (scored - counts).unsqueeze(1)
        return masked_mean_nll(logits, ids[:, -scored:], mask).cpu().tolist()
