"""Mean negative log-likelihood of response tokens under a causal LM.

This is the only module that imports torch; only `mosaic-it select` loads it, so the
mosaic pipeline runs without torch installed.
"""

from __future__ import annotations

import inspect
import threading
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


def mean_response_nll(nll: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """Per row b, the mean of the NLLs of row b's scored predictions.

    `tail` (rows, n) marks each row's scored predictions; `nll` (tail.sum(),) holds their
    NLLs row by row, in order.
    """
    per_row = torch.zeros(tail.shape, dtype=nll.dtype, device=nll.device)
    per_row[tail] = nll
    return per_row.sum(-1) / tail.sum(-1)


# Logits of one block of response positions, at most. Each thread projects into the same two
# buffers, call after call: on CPU a fresh allocation of this size is mapped anew by glibc (over its
# 32 MiB ceiling) and the kernel's zeroing of its pages costs as much as the softmax, while blocks
# small enough to be recycled multiply the calls whose intra-op threads wait for each other.
LOGITS_BLOCK_BYTES = 64 << 20


class ResponseLosses:
    """A causal LM that gives the mean NLL of the last n tokens of each sequence."""

    def __init__(self, model, device: str):
        self.model = model
        self.device = device
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.projects = self._logits_are_the_projection()
        self._blocks = threading.local()  # RunInference may share the model between threads

    @classmethod
    def load(cls, name: str, revision: str | None, device: str, dtype: str) -> ResponseLosses:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=getattr(torch, dtype))
        return cls(model.to(device).eval(), device)  # type: ignore[arg-type]  # transformers types `to` oddly

    @torch.inference_mode()
    def _logits_are_the_projection(self) -> bool:
        """Whether the model's logits are its output embedding applied to its decoder's last hidden
        states, and nothing more (no soft-capping or scaling): then the scorer runs the two itself
        and projects only the response positions, in blocks. Checked on a probe sequence."""
        get_decoder, get_head = (getattr(self.model, name, None) for name in ("get_decoder", "get_output_embeddings"))
        head = get_head() if get_head else None
        if get_decoder is None or not isinstance(head, torch.nn.Linear):
            return False
        seen: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda module, inputs, output: seen.append(output))
        ids = torch.arange(1, 5, device=self.device).unsqueeze(0)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position_ids": ids - 1}
        try:
            logits = self.model(**inputs).logits
        finally:
            hook.remove()
        own = head(get_decoder()(**inputs).last_hidden_state)
        return len(seen) == 1 and logits.data_ptr() == seen[0].data_ptr() and torch.equal(own, logits)

    @torch.inference_mode()
    def mean_nll(self, sequences: Sequence[tuple[Sequence[int], int]]) -> list[float]:
        """(token ids, n) -> mean NLL of the last n tokens given the ones before them.

        Sequences are left-padded to a common end, with explicit position ids, so the
        response positions line up at the end of the batch; the vocabulary projection and
        the softmax (the largest share of the work for a small model with a large
        vocabulary) run on the response positions only.
        """
        width = max(len(ids) for ids, _ in sequences)
        scored = max(n for _, n in sequences)
        ids = torch.zeros((len(sequences), width), dtype=torch.long)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(sequences):
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            attention[row, width - len(tokens) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        counts = torch.tensor([n for _, n in sequences])
        # tail[b, j]: the j-th of the last `scored` tokens of row b is a scored response token.
        tail = (torch.arange(scored).unsqueeze(0) >= (scored - counts).unsqueeze(1)).to(self.device)
        inputs = {"input_ids": ids.to(self.device), "attention_mask": attention.to(self.device)}
        inputs["position_ids"] = positions.to(self.device)
        targets = inputs["input_ids"][:, -scored:][tail]
        nll = self._projected_nll(inputs, tail, targets) if self.projects else self._model_nll(inputs, tail, targets)
        return mean_response_nll(nll, tail).cpu().tolist()

    def _projected_nll(self, inputs: dict, tail: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLLs of the response tokens, row by row: the decoder, then the projection of the
        response positions block by block, each block's float32 log-softmax computed in place."""
        hidden = self.model.get_decoder()(**inputs).last_hidden_state[:, -(tail.shape[1] + 1) : -1][tail]
        head = self.model.get_output_embeddings()
        logits, log_probs = self._block_buffers(head.weight)
        nll = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        for start in range(0, len(hidden), len(logits)):
            part = hidden[start : start + len(logits)]
            block, probs = logits[: len(part)], log_probs[: len(part)]
            if head.bias is None:
                torch.mm(part, head.weight.t(), out=block)
            else:
                torch.addmm(head.bias, part, head.weight.t(), out=block)
            if probs.data_ptr() != block.data_ptr():
                probs.copy_(block)
            torch.log_softmax(probs, -1, out=probs)
            torch.neg(
                probs.gather(1, targets[start : start + len(part)].unsqueeze(1)).squeeze(1),
                out=nll[start : start + len(part)],
            )
        return nll

    def _block_buffers(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This thread's (logits, float32 log-probabilities) buffers of one block: the same tensor for a
        float32 model."""
        buffers = getattr(self._blocks, "buffers", None)
        if buffers is None:
            rows = max(1, LOGITS_BLOCK_BYTES // (4 * len(weight)))
            logits = torch.empty((rows, len(weight)), dtype=weight.dtype, device=weight.device)
            log_probs = logits if weight.dtype == torch.float32 else torch.empty_like(logits, dtype=torch.float32)
            buffers = self._blocks.buffers = (logits, log_probs)
        return buffers

    def _model_nll(self, inputs: dict, tail: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLLs of the response tokens, row by row, from the model's own logits of the last positions."""
        scored = tail.shape[1]
        extra = {"logits_to_keep": scored + 1} if self.keeps_logits else {}
        logits = self.model(**inputs, **extra).logits[:, -(scored + 1) : -1][tail]
        return F.cross_entropy(logits.float(), targets, reduction="none")
