"""IterIT in the training loop: the example script's Trainer run with the callback, on CPU with a tiny Llama."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from select_support import make_records, write_jsonl

pytest.importorskip("torch", reason="mosaic-it select needs torch (the [select] extra)")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate (the [train] extra)")

from transformers import TrainerCallback

from pipeline.training import IterITCallback, SelectionDataset, read_selected
from transforms.core.ifd import conditional_chat
from transforms.core.records import Record

EXAMPLE = Path(__file__).resolve().parents[2] / "docs/examples/iterit_train.py"
RECORDS, RATIO, UPDATE_RATIO = 200, 0.1, 2
K = int(RECORDS * RATIO)


def load_example():
    spec = importlib.util.spec_from_file_location("iterit_train", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EpochLog(TrainerCallback):
    """Marks where each epoch's batches begin in the list the recording collator fills."""

    def __init__(self, batches: list):
        self.batches, self.starts = batches, []

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.starts.append(len(self.batches))


def epoch_inputs(batches: list, starts: list[int], epoch: int) -> Counter:
    """The token sequences the trainer was given in an epoch (1-based)."""
    end = starts[epoch] if epoch < len(starts) else len(batches)
    return Counter(tuple(feature["input_ids"]) for batch in batches[starts[epoch - 1] : end] for feature in batch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """The example's two-epoch run on 200 records, with the batches the trainer saw."""
    tmp = tmp_path_factory.mktemp("train")
    write_jsonl(tmp / "input.jsonl", make_records(RECORDS))
    example = load_example()
    args = example.parse(
        [
            "--model",
            str(tiny_model),
            "--input",
            str(tmp / "input.jsonl"),
            "--output",
            str(tmp / "run"),
            "--epochs",
            "2",
            "--ratio",
            str(RATIO),
            "--update-ratio",
            str(UPDATE_RATIO),
            "--max-tokens",
            "256",
        ]
    )
    trainer, iterit = example.build(args)
    batches: list = []
    collate = trainer.data_collator
    trainer.data_collator = lambda features: batches.append(features) or collate(features)
    log = EpochLog(batches)
    trainer.add_callback(log)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        trainer.train()
    return tmp / "run", iterit, batches, log.starts, iterit.dataset.encode, printed.getvalue()


def test_round_one_rescores_update_ratio_times_k_records_with_the_epoch_one_checkpoint(trained):
    run, iterit, *_ = trained
    assert [r.number for r in iterit.rounds] == [0, 1]  # no round after the last epoch
    manifest = json.loads((run / "round-1/manifest.json").read_text())
    checkpoint = str(run / "checkpoints/epoch-1")
    assert manifest["model"]["name"] == checkpoint and manifest["previous"] == str(run / "round-0")
    counts = manifest["counts"]
    assert counts["k"] == K and counts["window"] == UPDATE_RATIO * K
    assert counts["scores"]["computed"] + counts["scores"]["cached"] == UPDATE_RATIO * K
    assert counts["scores"]["kept"] == RECORDS - UPDATE_RATIO * K
    order = [json.loads(line) for line in (run / "round-1/order.jsonl").read_text().splitlines()]
    assert {(row["round"], row["model"]) for row in order[: UPDATE_RATIO * K]} == {(1, checkpoint)}
    assert {row["round"] for row in order[UPDATE_RATIO * K :]} == {0}


def test_each_epoch_trains_on_exactly_its_round(trained):
    run, iterit, batches, starts, encode, _ = trained
    assert len(starts) == 2
    for epoch, directory in ((1, "round-0"), (2, "round-1")):
        selection = read_selected(str(run / directory))
        assert len(selection) == K
        assert epoch_inputs(batches, starts, epoch) == Counter(
            tuple(encode(record)["input_ids"]) for record in selection
        )
    assert iterit.rounds[1].overlap == len(set(iterit.rounds[0].selected) & set(iterit.rounds[1].selected))


def test_the_example_prints_loss_and_overlap_per_epoch(trained):
    run, iterit, *_, printed = trained
    first, second = printed.splitlines()
    overlap = iterit.rounds[1].overlap
    assert re.fullmatch(
        rf"epoch 1: trained on round 0, mean loss \d+\.\d{{4}}; round 1 selected {K}, {overlap} also in round 0", first
    )
    assert re.fullmatch(r"epoch 2: trained on round 1, mean loss \d+\.\d{4}", second)
    assert (run / "checkpoints/epoch-1/config.json").is_file() and not (run / "checkpoints/epoch-2").exists()


def test_baseline_keeps_round_zero(tmp_path, tiny_model):
    write_jsonl(tmp_path / "input.jsonl", make_records(30))
    dataset = SelectionDataset(lambda record: record["id"])
    iterit = IterITCallback(
        dataset,
        output_dir=str(tmp_path / "run"),
        inputs=[str(tmp_path / "input.jsonl")],
        model=str(tiny_model),
        select_args=["--ratio", "0.2", "--max-tokens", "256"],
        update_strategy="baseline",
    )
    assert list(iterit.select_round_zero()) == [record["id"] for record in read_selected(str(tmp_path / "run/round-0"))]
    state = type("State", (), {"global_step": 1, "max_steps": 4, "epoch": 1.0, "is_world_process_zero": True})()
    iterit.on_epoch_end(None, state, None, model=None)
    assert [r.number for r in iterit.rounds] == [0] and dataset.round == 0 and len(dataset) == 6


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"update_strategy": "sometimes"}, "update_strategy 'sometimes' is unknown"),
        ({"select_args": ["--ratio", "0.1", "--round=2"]}, "must not set --round"),
        ({"select_args": ["--output", "x", "--model", "m"]}, "must not set --model, --output"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        IterITCallback(SelectionDataset(dict), output_dir="o", inputs=["i"], model="m", **settings)


def prompt_completion(row: dict) -> dict:
    """A selected record as a conversational prompt/completion example (TRL's format)."""
    *prompt, answer = conditional_chat(
        Record(row["id"], row["instruction"], row["input"], row["output"], "s:0"), row["output"]
    )
    return {"prompt": prompt, "completion": [answer]}


def test_the_same_callback_renews_the_selection_of_trl_sft_trainer(tmp_path, tiny_model):
    trl = pytest.importorskip("trl", reason="the SFTTrainer check needs trl (the [test] extra)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_jsonl(tmp_path / "input.jsonl", make_records(40))
    iterit = IterITCallback(
        SelectionDataset(prompt_completion),
        output_dir=str(tmp_path / "run"),
        inputs=[str(tmp_path / "input.jsonl")],
        model=str(tiny_model),
        select_args=["--ratio", "0.2", "--update-ratio", "2", "--max-tokens", "256"],
    )
    dataset = iterit.select_round_zero().as_iterable()  # SFTTrainer takes a `datasets` dataset only
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = trl.SFTConfig(
        output_dir=str(tmp_path / "trainer"),
        max_steps=4,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=False,
        bf16=False,
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    batches: list = []
    collate = trainer.data_collator
    trainer.data_collator = lambda features: batches.append(features) or collate(features)
    log = EpochLog(batches)
    trainer.add_callback(iterit)
    trainer.add_callback(log)
    trainer.train()

    assert [r.number for r in iterit.rounds] == [0, 1] and iterit.rounds[1].epochs_trained == 1
    for epoch, round_ in ((1, iterit.rounds[0]), (2, iterit.rounds[1])):
        texts = [tokenizer.decode(ids) for ids in epoch_inputs(batches, log.starts, epoch).elements()]
        by_response = {f"{r['output']}<|im_end|>": r["id"] for r in read_selected(round_.directory)}
        assert sorted(by_response[next(o for o in by_response if o in text)] for text in texts) == sorted(
            round_.selected
        )
