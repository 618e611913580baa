"""Fine-tune a causal LM on IterIT selections that the model being trained renews every epoch.

    python docs/examples/iterit_train.py --model DIR --input FILES... --output DIR --epochs N --ratio R \\
        [--update-strategy iterative|baseline] [--update-ratio U] [--prompt-template T] [--max-tokens N]

Round 0 selects with the base model (`mosaic-it select`, in this process); with `iterative`, the
end of every epoch but the last saves the model under DIR/checkpoints/epoch-E and runs the next
round with it, and the next epoch trains on that round's selection (`baseline`: every epoch trains
on round 0's). Rounds are written to DIR/round-N. The loss covers the response tokens only, of
the chat select scores: the same template and the same tokens (the template's closing tokens
after the response are not trained). After each epoch it prints the epoch's mean training loss
and the overlap of the next selection with the previous one. Needs `pip install -e '.[train]'`.
"""

from __future__ import annotations

import argparse
import posixpath
from collections.abc import Sequence

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from pipeline.training import UPDATE_STRATEGIES, IterITCallback, SelectionDataset
from transforms.core.ifd import OWN_TEMPLATE, PairBuilder, ScoringIdentity, ScoringPair, resolve_template
from transforms.core.records import Record

IGNORED = -100  # label of a token the loss skips


class ResponseEncoder:
    """A selected record (Alpaca dict) -> `input_ids` and `labels`, labels only on the response."""

    def __init__(self, tokenizer, template: str, max_tokens: int):
        self.builder = PairBuilder(tokenizer, ScoringIdentity("", "", template, max_tokens, ""))

    def __call__(self, row: dict) -> dict[str, list[int]]:
        record = Record(row["id"], row["instruction"], row.get("input", ""), row["output"], "selected:0")
        [pair] = self.builder.build([record])
        if not isinstance(pair, ScoringPair):  # select scored it with the same template: cannot happen
            raise ValueError(f"record {row['id']}: {pair.reason}")
        ids = list(pair.conditional)
        prompt = len(ids) - pair.conditional_response
        return {"input_ids": ids, "labels": [IGNORED] * prompt + ids[prompt:]}


def collate(features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Right-pads a batch; padding is masked out of attention and loss."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros((len(features), width), dtype=torch.long)
    labels = torch.full((len(features), width), IGNORED, dtype=torch.long)
    attention = torch.zeros((len(features), width), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n], labels[row, :n], attention[row, :n] = (
            torch.tensor(feature["input_ids"]),
            torch.tensor(feature["labels"]),
            1,
        )
    return {"input_ids": ids, "labels": labels, "attention_mask": attention}


class EpochReport(TrainerCallback):
    """Prints each epoch's mean training loss and the next round's overlap with the previous one."""

    def __init__(self, iterit: IterITCallback):
        self.iterit = iterit
        self.trained_on: int | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trained_on = self.iterit.dataset.round

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = round(state.epoch or 0)
        losses = [
            entry["loss"] for entry in state.log_history if "loss" in entry and epoch - 1 < entry["epoch"] <= epoch
        ]
        line = f"epoch {epoch}: trained on round {self.trained_on}, mean loss {sum(losses) / max(len(losses), 1):.4f}"
        latest = self.iterit.rounds[-1]
        if latest.overlap is not None and latest.epochs_trained == epoch:
            selected, previous = len(latest.selected), latest.number - 1
            line += f"; round {latest.number} selected {selected}, {latest.overlap} also in round {previous}"
        print(line, flush=True)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="Base model directory (save_pretrained layout, with its tokenizer)."
    )
    parser.add_argument("--input", nargs="+", required=True, help="Input files or globs, any shape select reads.")
    parser.add_argument("--output", required=True, help="Directory of the rounds, checkpoints and trainer state.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--ratio", type=float, default=0.05, help="select --ratio: share (or count) of records per epoch."
    )
    parser.add_argument(
        "--update-ratio", type=int, default=3, help="select --update-ratio: a round re-scores U x k records."
    )
    parser.add_argument("--update-strategy", choices=UPDATE_STRATEGIES, default="iterative")
    parser.add_argument(
        "--prompt-template", default=OWN_TEMPLATE, help="select --prompt-template, also used for training."
    )
    parser.add_argument("--max-tokens", type=int, default=2048, help="select --max-tokens, also the training length.")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> tuple[Trainer, IterITCallback]:
    """Runs round 0 and returns the trainer, with the IterIT callback in it."""
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    template = resolve_template(args.prompt_template, tokenizer.chat_template)
    dataset = SelectionDataset(ResponseEncoder(tokenizer, template, args.max_tokens))
    select_args = [
        "--ratio",
        str(args.ratio),
        "--update-ratio",
        str(args.update_ratio),
        "--prompt-template",
        args.prompt_template,
        "--max-tokens",
        str(args.max_tokens),
    ]
    iterit = IterITCallback(
        dataset,
        output_dir=args.output,
        inputs=args.input,
        model=args.model,
        select_args=select_args,
        update_strategy=args.update_strategy,
    )
    iterit.select_round_zero()
    training = TrainingArguments(
        output_dir=posixpath.join(args.output, "trainer"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    model = AutoModelForCausalLM.from_pretrained(args.model)
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=dataset,
        data_collator=collate,
        callbacks=[iterit, EpochReport(iterit)],
    )
    trainer.remove_callback(PrinterCallback)  # one line per epoch (EpochReport), not one per step
    return trainer, iterit


def main(argv: Sequence[str] | None = None) -> None:
    trainer, _ = build(parse(argv))
    trainer.train()


if __name__ == "__main__":
    main()
