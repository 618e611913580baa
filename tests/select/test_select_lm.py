"""Response losses under a causal LM: the response NLL on hand-made logits, and batching."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
F = torch.nn.functional

from transforms.core import lm  # noqa: E402
from transforms.core.ifd import ifd_score  # noqa: E402
from transforms.core.lm import ResponseLosses, mean_response_nll  # noqa: E402


def test_mean_response_nll_averages_each_rows_scored_predictions():
    # Row 0 scores its last two predictions, row 1 its last one; the NLLs come row by row.
    nll = torch.tensor([0.5, 1.5, 4.0])
    tail = torch.tensor([[True, True], [False, True]])
    assert mean_response_nll(nll, tail).tolist() == [1.0, 4.0]


def test_ifd_from_hand_made_logits():
    # The response token 1 is likely given the instruction (p = 0.8), less so alone (p = 0.5).
    conditional, prior = torch.log(torch.tensor([[0.2, 0.8]])), torch.log(torch.tensor([[0.5, 0.5]]))
    target, tail = torch.tensor([1]), torch.tensor([[True]])
    c, p = (mean_response_nll(F.cross_entropy(x, target, reduction="none"), tail).item() for x in (conditional, prior))
    assert ifd_score(c, p) == pytest.approx(0.5 / 0.8, rel=1e-6)  # ratio of perplexities: (1/0.8) / (1/0.5)


class Counting(torch.nn.Module):
    """A fake causal LM whose logits at a position favour (previous token + 1) mod 5; it
    records what it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep=0):
        self.calls.append({"input_ids": input_ids, "position_ids": position_ids, "logits_to_keep": logits_to_keep})
        logits = torch.nn.functional.one_hot((input_ids + 1) % 5, 5).float() * 2.0
        logits = logits[:, -logits_to_keep:] if logits_to_keep else logits

        class Output:
            pass

        output = Output()
        output.logits = logits
        return output


def test_mean_nll_left_pads_and_scores_only_the_last_n_tokens():
    model = Counting()
    scorer = ResponseLosses(model, "cpu")
    hit = -math.log(math.exp(2) / (math.exp(2) + 4))  # the favoured token
    miss = -math.log(1 / (math.exp(2) + 4))
    losses = scorer.mean_nll([([1, 2, 3, 4], 2), ([0, 1, 3], 1), ([2, 3], 1)])
    assert losses == pytest.approx([hit, miss, hit], rel=1e-6)  # 2->3, 3->4 | 1->3 | 2->3
    assert not scorer.projects  # it has no decoder and output embedding to run apart
    call = model.calls[0]
    assert call["input_ids"].tolist() == [[1, 2, 3, 4], [0, 0, 1, 3], [0, 0, 2, 3]]
    assert call["position_ids"].tolist() == [[0, 1, 2, 3], [0, 0, 1, 2], [0, 0, 0, 1]]
    assert call["logits_to_keep"] == 3


def test_a_batch_scores_like_each_sequence_alone(tiny_model):
    scorer = ResponseLosses.load(str(tiny_model), None, "cpu", "float32")
    sequences = [([5, 9, 12, 40, 41, 42, 7], 3), ([6, 30, 31], 1), ([8, 8, 9, 10, 11, 12, 13, 14, 15, 16], 6)]
    together = scorer.mean_nll(sequences)
    alone = [scorer.mean_nll([sequence])[0] for sequence in sequences]
    assert together == pytest.approx(alone, rel=1e-5)
    # Without the padding trick: the mean NLL of the last n tokens from one plain forward pass.
    ids, n = sequences[2]
    logits = scorer.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    expected = torch.nn.functional.cross_entropy(logits[-n:], torch.tensor(ids[1:])[-n:]).item()
    assert alone[2] == pytest.approx(expected, rel=1e-5)


def test_projecting_the_response_positions_in_blocks_gives_the_models_own_losses(tiny_model, monkeypatch):
    projected = ResponseLosses.load(str(tiny_model), None, "cpu", "float32")
    assert projected.projects  # a Llama's logits are its lm_head on its decoder's states, nothing more
    own = ResponseLosses(projected.model, "cpu")
    own.projects = False
    sequences = [([5, 9, 12, 40, 41, 42, 7], 3), ([6, 30, 31], 1), ([8, 8, 9, 10, 11, 12, 13, 14, 15, 16], 6)]
    expected = own.mean_nll(sequences)
    whole = projected.mean_nll(sequences)
    assert whole == pytest.approx(expected, rel=1e-6)
    monkeypatch.setattr(lm, "LOGITS_BLOCK_BYTES", 4 * len(projected.model.get_output_embeddings().weight) * 4)
    blocked = ResponseLosses(projected.model, "cpu")
    assert blocked.mean_nll(sequences) == whole  # blocks of 4 positions, reused: the same bits
    assert len(blocked._block_buffers(projected.model.get_output_embeddings().weight)[0]) == 4


def test_a_model_that_rescales_its_logits_is_scored_from_its_own_logits(tiny_model):
    model = ResponseLosses.load(str(tiny_model), None, "cpu", "float32").model
    forward = model.forward
    model.forward = lambda **kwargs: type("Output", (), {"logits": forward(**kwargs).logits * 0.5})()
    assert not ResponseLosses(model, "cpu").projects


def test_an_output_embedding_with_a_bias_is_projected_with_it(tiny_model):
    model = ResponseLosses.load(str(tiny_model), None, "cpu", "float32").model
    head = model.get_output_embeddings()
    torch.manual_seed(0)
    head.bias = torch.nn.Parameter(torch.randn(head.out_features))
    projected, own = ResponseLosses(model, "cpu"), ResponseLosses(model, "cpu")
    own.projects = False
    sequences = [([5, 9, 12, 40, 41, 42, 7], 3), ([6, 30, 31], 1)]
    assert projected.projects
    with_bias = projected.mean_nll(sequences)
    assert with_bias == pytest.approx(own.mean_nll(sequences), rel=1e-6)
    head.bias = None
    assert projected.mean_nll(sequences) != pytest.approx(with_bias, rel=1e-3)  # the bias counted
