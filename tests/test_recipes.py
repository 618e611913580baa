"""Recipes: --config files for run (and any PipelineOptions subclass), --print-config, errors naming the key."""

from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.options import MosaicOptions
from pipeline.recipes import RecipeError, apply_recipe, effective_config, recipe_flags


def _recipe(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_a_recipe_sets_options_and_the_command_line_overrides_it(tmp_path):
    recipe = _recipe(tmp_path, "wrap-mode: lognormal\nwrap_max: 6\nepochs: 2\ninput: [a.jsonl, b.jsonl]\nrules: null\n")
    flags = apply_recipe(["--config", recipe, "--epochs", "3"], MosaicOptions)
    options = MosaicOptions(flags)
    assert (options.wrap_mode, options.wrap_max, options.epochs, options.input, options.rules) == (
        "lognormal",
        6,
        3,
        ["a.jsonl", "b.jsonl"],
        None,
    )
    overridden = MosaicOptions(apply_recipe(["--config", recipe, "--input", "c.json"], MosaicOptions))
    assert overridden.input == ["c.json"]


def test_a_recipe_may_hold_runner_options(tmp_path):
    recipe = _recipe(
        tmp_path,
        "direct_running_mode: multi_processing\ndirect_num_workers: 2\nsave_main_session: true\npack_processes: 3\n",
    )
    assert recipe_flags(recipe, MosaicOptions) == [
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
        "--save_main_session",
        "--pack-processes=3",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("wrap_mod: uniform\n", "unknown key 'wrap_mod' (did you mean 'wrap_mode'?)"),
        ("colour: blue\n", "unknown key 'colour'"),
        ("- epochs\n", "must hold a mapping of option names to values"),
        ("epochs: [1, 2]\n", "'epochs' takes one value, got a list"),
        ("save_main_session: maybe\n", "'save_main_session' takes true or false"),
        ("epochs: {a: 1}\n", "'epochs' takes plain values"),
        ("epochs: [\n", "is not valid YAML"),
    ],
)
def test_a_bad_recipe_is_a_one_line_error_that_names_the_problem(tmp_path, text, message):
    recipe = _recipe(tmp_path, text)
    with pytest.raises(RecipeError) as error:
        recipe_flags(recipe, MosaicOptions)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_key_fails_the_command_with_exit_2(tmp_path, capsys):
    recipe = _recipe(tmp_path, "seeed: 3\n")
    assert main(["run", "--config", recipe]) == 2
    assert capsys.readouterr().err.strip() == f"mosaic-it: error: {recipe}: unknown key 'seeed' (did you mean 'seed'?)"


def test_a_missing_recipe_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="cannot be read"):
        recipe_flags(str(tmp_path / "absent.yaml"), MosaicOptions)


def test_print_config_prints_the_effective_configuration_and_runs_nothing(tmp_path, capsys):
    recipe = _recipe(
        tmp_path, f"wrap_mode: exp\noutput: {tmp_path / 'out'}\ndirect_num_workers: 2\npack_processes: 1\n"
    )
    assert main(["run", "--config", recipe, "--seed", "7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert list(printed)[:6] == [
        "input",
        "output",
        "max_reject_ratio",
        "fields",
        "tags",
        "tokenizer",
    ]  # in their declared order
    assert (printed["wrap_mode"], printed["seed"], printed["epochs"], printed["direct_num_workers"]) == ("exp", 7, 4, 2)
    assert printed["pack_processes"] == 1
    assert "runner" not in printed  # Beam options only when they differ from their default
    assert not (tmp_path / "out").exists()


def test_the_printed_configuration_is_a_recipe_for_the_same_run(tmp_path, capsys):
    first = effective_config(["--wrap-mode", "pareto", "--input", "x.jsonl", "--max-length", "512"], MosaicOptions)
    recipe = _recipe(tmp_path, yaml.safe_dump(first))
    assert effective_config(apply_recipe(["--config", recipe], MosaicOptions), MosaicOptions) == first


def test_the_run_recipes_in_docs_are_valid():
    docs = Path(__file__).parents[1] / "docs/recipes"
    paper = effective_config(apply_recipe(["--config", str(docs / "mosaic-paper.yaml")], MosaicOptions), MosaicOptions)
    assert (
        paper["tokenizer"],
        paper["max_length"],
        paper["epochs"],
        paper["wrap_mode"],
        paper["wrap_max"],
        paper["strategy"],
    ) == ("hf:meta-llama/Llama-2-7b-hf", 2000, 4, "uniform", 10, "both")
    selected = effective_config(
        apply_recipe(["--config", str(docs / "mosaic-selected.yaml")], MosaicOptions), MosaicOptions
    )
    assert selected["input"] == ["out/selected/selected-*.jsonl"]
