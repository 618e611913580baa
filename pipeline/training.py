"""IterIT during fine-tuning: a Hugging Face Trainer callback that re-selects the training data
with the model being trained, one `mosaic-it select` round per epoch.

Round 0 scores every record with the base model before training. With the `iterative`
strategy, the end of each epoch (but the last) saves the model, runs the next round with that
checkpoint (`--round N --previous round-(N-1)`: it re-scores the first update-ratio x k records
of the previous order), and the next epoch trains on the new selection. `baseline` trains every
epoch on round 0's selection. Rounds are the usual select output folders,
`output_dir/round-N/`, so `mosaic-it report` reads each of them.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from pipeline.iterit import run_select
from reporting.outputs import json_lines, matching, read_manifest

LOGGER = logging.getLogger("mosaic_it.training")
UPDATE_STRATEGIES = ("iterative", "baseline")
# Flags the callback sets itself for every round.
OWN_FLAGS = ("--input", "--output", "--model", "--round", "--previous")


class SelectionDataset(torch.utils.data.Dataset):
    """The current round's selected records (Alpaca dicts with their id), each passed through
    `encode` when read. IterITCallback replaces the records between epochs; a DataLoader
    reads the new ones from its next epoch on, as long as its workers are not persistent."""

    def __init__(self, encode: Callable[[dict], Any]):
        self.encode = encode
        self.records: list[dict] = []
        self.round: int | None = None

    def replace(self, records: list[dict], round_number: int) -> None:
        self.records, self.round = records, round_number

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:
        return self.encode(self.records[index])

    def __iter__(self) -> Iterator[Any]:
        return (self.encode(record) for record in list(self.records))

    def as_iterable(self):
        """A `datasets.IterableDataset` that reads the current records on every pass: for
        trainers that take no torch dataset (TRL's SFTTrainer); give them `max_steps`."""
        from datasets import IterableDataset

        return IterableDataset.from_generator(self.__iter__)


@dataclass(frozen=True)
class Round:
    """One select round the callback ran."""

    number: int
    epochs_trained: int  # epochs of training before the round's model
    directory: str
    model: str
    manifest: dict
    selected: list[str]  # ids, in pick order
    overlap: int | None  # selected ids also selected by the previous round


def read_selected(directory: str) -> list[dict]:
    """A finished round's selected records, in pick order (its shards hold contiguous picks)."""
    return list(json_lines(matching(directory, "selected-*.jsonl")))


class IterITCallback(TrainerCallback):
    """Re-selects the training set with the model being trained, one select round per epoch.

    `select_args` are further `mosaic-it select` flags (`--ratio`, `--update-ratio`,
    `--score-type`, `--diversity-decay`, `--prompt-template`, `--max-tokens`, `--cache`, ...) and
    Beam options (`--runner`, ...): without a runner, rounds run in this process on the local
    runner. Call `select_round_zero()` before building the trainer: the trainer sizes its
    epochs from round 0's selection.
    """

    def __init__(
        self,
        dataset: SelectionDataset,
        *,
        output_dir: str,
        inputs: Sequence[str],
        model: str,
        select_args: Sequence[str] = (),
        update_strategy: str = "iterative",
    ):
        if update_strategy not in UPDATE_STRATEGIES:
            raise ValueError(
                f"update_strategy '{update_strategy}' is unknown; choose one of {', '.join(UPDATE_STRATEGIES)}"
            )
        given = {flag.split("=", 1)[0] for flag in select_args if flag.startswith("--")}
        if given & set(OWN_FLAGS):
            raise ValueError(
                f"select_args must not set {', '.join(sorted(given & set(OWN_FLAGS)))}: the callback sets them"
            )
        self.dataset = dataset
        self.output_dir = output_dir.rstrip("/")
        self.inputs = list(inputs)
        self.base_model = model
        self.select_args = list(select_args)
        if "--model-tokenizer" not in given:  # checkpoints keep the base model's tokenizer
            self.select_args += ["--model-tokenizer", model]
        self.update_strategy = update_strategy
        self.rounds: list[Round] = []
        self.epochs = 0  # counted here: the trainer's fractional `state.epoch` is not whole for an iterable dataset

    def select_round_zero(self) -> SelectionDataset:
        """Scores every record with the base model and fills the dataset with round 0's selection."""
        if not self.rounds:
            self._run_round(self.base_model, epochs_trained=0)
        return self.dataset

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not self.rounds:
            raise RuntimeError("IterITCallback: call select_round_zero() before building the trainer")

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.epochs += 1
        if self.update_strategy == "baseline" or state.global_step >= state.max_steps:
            return  # no later epoch trains on a new selection
        checkpoint = posixpath.join(self.output_dir, "checkpoints", f"epoch-{self.epochs}")
        if state.is_world_process_zero:
            kwargs["model"].save_pretrained(checkpoint)
        self._run_round(checkpoint, epochs_trained=self.epochs, selects=state.is_world_process_zero)

    def _run_round(self, model: str, *, epochs_trained: int, selects: bool = True) -> None:
        """Runs the next round (in the main process only) and loads its selection (in every process)."""
        number = len(self.rounds)
        directory = posixpath.join(self.output_dir, f"round-{number}")
        if selects:
            argv = ["--input", *self.inputs, "--output", directory, "--model", model, *self.select_args]
            if number:
                argv += ["--round", str(number), "--previous", self.rounds[-1].directory]
            LOGGER.info("IterIT round %d with %s", number, model)
            run_select(argv)
        _wait_for_every_process()
        manifest = read_manifest(directory)
        records = read_selected(directory)
        if self.rounds and len(records) != len(self.dataset):
            LOGGER.warning(
                "round %d selected %d records (fewer than k with IFD < 1?); the trainer planned its epochs for %d",
                number,
                len(records),
                len(self.rounds[0].selected),
            )
        ids = [record["id"] for record in records]
        overlap = len(set(ids) & set(self.rounds[-1].selected)) if self.rounds else None
        self.rounds.append(Round(number, epochs_trained, directory, model, manifest, ids, overlap))
        self.dataset.replace(records, number)


def _wait_for_every_process() -> None:
    """Under distributed training, the other processes wait until the main one has written the round."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
