import pytest
import yaml

from pipeline.cli import main
from reporting.inspection import run_rules
from tests.e2e import read_jsonl, run_job
from tests.shared_data import SHARED_DATA, require_shared
from transforms.core.randomness import HashStream
from transforms.core.rulebook import MASK_RULES, PERMUTE_RULES
from transforms.core.rules import RulesError, Structure, load_rules
from transforms.core.strategies import compose


def default_data():
    from importlib import resources

    return yaml.safe_load(resources.files("transforms").joinpath("data/rules.yaml").read_text(encoding="utf-8"))


def write(tmp_path, data):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def test_built_in_rules_cover_every_implemented_rule_with_several_phrasings():
    rules = load_rules()
    assert set(rules.permute) == set(PERMUTE_RULES) and set(rules.maskout) == set(MASK_RULES)
    assert all(len(phrasings) >= 2 for phrasings in rules.permute.values())
    assert all(len(p.many) >= 2 for p in rules.maskout.values())
    assert all(len(rules.format[kind]) >= 3 for kind in rules.format)


def test_a_rules_file_may_keep_a_subset_of_rules(tmp_path):
    data = default_data()
    data["permute"] = {"REVERSE": ["Answer from the last instruction to the first."]}
    rules = load_rules(write(tmp_path, data))
    drawn = {compose(["a", "b", "c"], ["x", "y", "z"], "order", rules, HashStream(i)).rule for i in range(100)}
    assert drawn == {None, "REVERSE"}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["permute"].update({"SHUFFLE": ["x"]}), "unknown rule"),
        (lambda d: d["permute"].update({"SEQUENCE": ["Answer in some order."]}), r"must contain \['\{sequence\}'\]"),
        (lambda d: d["format"].update({"tagged": ["Use {colour} tags."]}), "unknown placeholder"),
        (lambda d: d.update({"labels": []}), "'labels' must be a non-empty list"),
        (lambda d: d["maskout"]["MASK_LONGEST"].update({"many": ["Skip the long ones."]}), r"must contain \['\{m\}'\]"),
        (lambda d: d.update({"layouts": ["{meta}\n{instructions}"]}), r"unknown section\(s\) \['layouts'\]"),
        (lambda d: d.update({"tags": [["<a>", "</a>"]]}), r"unknown section\(s\) \['tags'\]"),
        (lambda d: d["labels"].append(""), r"'labels': \"\" is not a label; .* structure\.unnumbered"),
        (lambda d: d["labels"].append("Task: "), r"'labels': 'Task: ' must contain \['\{n\}'\]"),
        (lambda d: d["tag_styles"].append(["<a>"]), r"'tag_styles\[27\]' must be a pair of strings"),
        (
            lambda d: d["tag_styles"].append(["<a>", "</{word}>"]),
            r"'tag_styles\[27\]': '<a>' must contain \['\{word\}'\]",
        ),
        (
            lambda d: d["tag_styles"].append(["<{word}>", "</a>"]),
            r"'tag_styles\[27\]': the end tag '</a>' must contain",
        ),
        (
            lambda d: d["tag_styles"].append(["<{word}>", "<{word}>"]),
            r"'tag_styles\[27\]': begin and end tags must differ",
        ),
        (lambda d: d["tag_styles"].append(["<{word}\n>", "</{word}>"]), r"'tag_styles\[27\]': .* one line each"),
        (
            lambda d: d["tag_styles"].append(["<{word} {m}>", "</{word}>"]),
            r"'tag_styles\[27\]': .* unknown placeholder",
        ),
        (lambda d: d["tag_words"].append(["answer"]), r"'tag_words\[17\]' must be a pair of strings"),
        (
            lambda d: d["tag_words"].append(["{answer}", "end"]),
            r"'tag_words\[17\]': \['\{answer\}', 'end'\] must be two",
        ),
        (lambda d: d["tag_words"].append([" ", "end"]), r"'tag_words\[17\]': .* non-empty words"),
        (lambda d: d.update({"meta_separators": [" "]}), r"'meta_separators': ' ' must hold a line break"),
        (lambda d: d.update({"meta_separators": []}), r"'meta_separators' must be a non-empty list"),
        (lambda d: d["structure"].update({"bare_format": 1.5}), r"'structure\.bare_format' must be a probability"),
        (lambda d: d["structure"].update({"tagged": "half"}), r"'structure\.tagged' must be a probability"),
        (lambda d: d["structure"].update({"meta_before": True}), r"'structure\.meta_before' must be a probability"),
        (lambda d: d["structure"].update({"numbered": 0.5}), r"structure: unknown knob\(s\) \['numbered'\]"),
        (lambda d: d.update({"structure": [0.1]}), r"'structure' must be a mapping"),
    ],
)
def test_malformed_rules_are_reported_with_the_entry(tmp_path, change, message):
    data = default_data()
    change(data)
    with pytest.raises(RulesError, match=message):
        load_rules(write(tmp_path, data))


def test_structure_knobs_left_out_take_the_original_rates(tmp_path):
    data = default_data()
    del data["structure"]["unnumbered"]
    assert load_rules(write(tmp_path, data)).structure == Structure(bare_format=0.2, meta_before=0.5, tagged=0.5)
    data["structure"] = {"bare_format": 0, "unnumbered": 1}
    structure = load_rules(write(tmp_path, data)).structure
    assert (structure.bare_format, structure.unnumbered, structure.meta_before) == (0.0, 1.0, 0.5)
    del data["structure"]
    assert load_rules(write(tmp_path, data)).structure == Structure()


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("labels: [unclosed", encoding="utf-8")
    with pytest.raises(RulesError, match=r"bad\.yaml: not valid YAML"):
        load_rules(str(path))


def test_a_run_reads_its_rules_file_once_and_keeps_its_text(tmp_path):
    data = default_data()
    data["permute"] = {"REVERSE": ["Give the answers from the last instruction back to the first."]}
    rules_path = write(tmp_path, data)
    output = tmp_path / "out"
    manifest = run_job(
        [require_shared(SHARED_DATA / "alpaca_en_demo.json")],
        output,
        "--rules",
        rules_path,
        "--strategy",
        "order",
        "--epochs",
        "1",
    )
    assert manifest["rules_text"] == (tmp_path / "rules.yaml").read_text(encoding="utf-8")
    assert set(manifest["counts"]["rule"]) <= {"REVERSE", "none"} and manifest["counts"]["rule"]["REVERSE"] > 0
    assert all(s["rule"] in (None, "REVERSE") for s in read_jsonl(output, "mosaics"))

    (tmp_path / "rules.yaml").write_text("not: [valid rules", encoding="utf-8")  # inspect reads the manifest's copy
    assert run_rules(manifest).permute == {
        "REVERSE": ("Give the answers from the last instruction back to the first.",)
    }
    assert main(["inspect", str(output), "--strategy", "permute", "--n", "1"]) == 0


def test_an_unreadable_rules_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "latin1.yaml").write_bytes("labels: ['Nº{n} ']".encode("latin-1"))
    for name in ("missing.yaml", "latin1.yaml"):
        assert main(["run", "--rules", str(tmp_path / name), "--output", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err
        assert f"--rules '{tmp_path / name}' cannot be read" in error and len(error.strip().splitlines()) == 1
