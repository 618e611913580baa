"""deploy/ cannot drift from the code: every file parses, every option it passes exists, the Flex
Template validates options as the pipeline does, and the image installs what the workers need."""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shlex
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from pipeline.options import MosaicOptions, OptionsError, validate
from tests.corpus import write_corpus
from transforms.core.lengths import LENGTH_TEMPLATES
from transforms.core.strategies import STRATEGIES
from transforms.core.wrap import WRAP_MODES
from transforms.formats import SAMPLE_FORMATS

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
METADATA = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
CRONJOB = DEPLOY / "schedule" / "cronjob.yaml"
DAG = DEPLOY / "schedule" / "mosaic_it_dag.py"


def _flags(option_classes) -> dict[str, str]:
    """Every flag spelling of the given PipelineOptions classes -> its option name."""
    parser = argparse.ArgumentParser(add_help=False, conflict_handler="resolve")
    for options_class in option_classes:
        options_class._add_argparse_args(parser)
    return {flag: action.dest for action in parser._actions for flag in action.option_strings}


MOSAIC_FLAGS = _flags([MosaicOptions])
PIPELINE_FLAGS = _flags({str(cls): cls for cls in PipelineOptions.__subclasses__()}.values())  # Beam's and ours


def mosaic_invocations(argv: list[str]) -> list[list[str]]:
    """The arguments of every `mosaic-it run` in a command line."""
    found = []
    for i in range(len(argv) - 1):
        if argv[i : i + 2] == ["mosaic-it", "run"]:
            rest = argv[i + 2 :]
            end = next((j for j, word in enumerate(rest) if word in ("&&", "||", ";", "|")), len(rest))
            found.append(rest[:end])
    return found


def shell_lines(script: str) -> list[list[str]]:
    return [shlex.split(line, comments=True) for line in script.replace("\\\n", " ").splitlines() if line.strip()]


def command_lines(node) -> list[list[str]]:
    """Command lines in a parsed YAML document: container/service argv lists and shell scripts."""
    lines = []
    if isinstance(node, dict):
        argv = [
            word for key in ("entrypoint", "command", "args") if isinstance(node.get(key), list) for word in node[key]
        ]
        if argv:
            lines.append([str(word) for word in argv])
        for value in node.values():
            lines.extend(command_lines(value))
    elif isinstance(node, list):
        for value in node:
            lines.extend(command_lines(value))
    elif isinstance(node, str):
        lines.extend(shell_lines(node))
    return lines


def flag_names(arguments: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in arguments if word.startswith("--")]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: str(path.relative_to(DEPLOY)))
def test_every_yaml_file_parses_and_passes_only_existing_options(path):
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document is not None]
    assert documents
    for document in documents:
        for line in command_lines(document):
            for arguments in mosaic_invocations(line):
                unknown = [flag for flag in flag_names(arguments) if flag not in PIPELINE_FLAGS]
                assert not unknown, f"{path.name} passes options the pipeline does not have: {unknown}"


def test_the_commands_of_the_deploy_readme_pass_only_existing_options():
    blocks = re.findall(r"```bash\n(.*?)```", (DEPLOY / "README.md").read_text(), re.S)
    invocations = [args for block in blocks for line in shell_lines(block) for args in mosaic_invocations(line)]
    assert len(invocations) >= 3
    for arguments in invocations:
        assert [flag for flag in flag_names(arguments) if flag not in PIPELINE_FLAGS] == []


def test_the_deploy_files_run_the_pipeline_where_they_should():
    invocations = {
        path.name: [
            args
            for document in yaml.safe_load_all(path.read_text())
            for line in command_lines(document)
            for args in mosaic_invocations(line)
        ]
        for path in YAML_FILES
    }
    assert len(invocations["cronjob.yaml"]) == 1 and len(invocations["docker-compose.yml"]) == 1
    for name in ("cronjob.yaml", "docker-compose.yml"):
        flags = set(flag_names(invocations[name][0]))
        assert {"--run-id", "--epoch-offset", "--runner", "--environment_type", "--environment_config"} <= flags


def test_the_flex_template_declares_every_pipeline_option_with_help_and_validation():
    names = [parameter["name"] for parameter in METADATA["parameters"]]
    assert sorted(names) == sorted(set(MOSAIC_FLAGS.values()))
    for parameter in METADATA["parameters"]:
        assert f"--{parameter['name']}" in MOSAIC_FLAGS  # the spelling the launcher passes
        assert parameter["label"] and parameter["helpText"] and parameter["regexes"]
    required = {parameter["name"] for parameter in METADATA["parameters"] if not parameter.get("isOptional")}
    assert required == {"input", "output"}


def _accepted_by_template(name: str, value: str) -> bool:
    (parameter,) = [p for p in METADATA["parameters"] if p["name"] == name]
    return all(re.fullmatch(regex, value) for regex in parameter["regexes"])


def _accepted_by_pipeline(name: str, value: str) -> bool:
    try:
        options = MosaicOptions([f"--{name}={value}"])
        options.get_all_options()  # parses, as the launcher does
        validate(options)
    except (OptionsError, SystemExit):
        return False
    return True


# Per option: values the pipeline accepts, then values it rejects.
VALIDATED = {
    # `chat` needs an hf: tokenizer with a chat template (the default tokenizer is quicktok)
    "length_template": ([name for name in LENGTH_TEMPLATES if name != "chat"], ["alpaca", ""]),
    "wrap_mode": (WRAP_MODES, ["gaussian", ""]),
    "strategy": (STRATEGIES, ["shuffle", ""]),
    "formats": (["jsonl", "avro,messages", ",".join(SAMPLE_FORMATS)], ["jsonl,csv", "", ","]),
    "run_id": (["2025-03-01", "nightly_7.b", "R1"], ["a/b", "../x", "-x", ".hidden", ""]),
    "epochs": (["1", "12"], ["0", "-1", "1.5", "x", ""]),
    "epoch_offset": (["0", "12"], ["-1", "1.5", "x", ""]),
    "wrap_max": (["1", "12"], ["0", "-1", "x", ""]),
    "max_length": (["1", "2048"], ["0", "-1", "x", ""]),
    "num_shards": (["0", "12"], ["-1", "x", ""]),
    "records_per_key": (["1", "2048"], ["0", "-1", "x", ""]),
    "max_reject_ratio": (["0", "0.5", "1", "1.0"], ["1.5", "-0.1", "x", ""]),
}


@pytest.mark.parametrize("name", sorted(VALIDATED))
def test_the_flex_template_validates_options_as_the_pipeline_does(name):
    """Its regexes accept the pipeline's values, and reject its errors before a launch starts."""
    accepted, rejected = VALIDATED[name]
    for value in accepted:
        assert _accepted_by_pipeline(name, value) and _accepted_by_template(name, value), (name, value)
    for value in rejected:
        assert not _accepted_by_pipeline(name, value) and not _accepted_by_template(name, value), (name, value)


def test_the_launch_script_passes_only_existing_options():
    script = (DEPLOY / "dataflow" / "launch.sh").read_text()
    block = re.search(r"local parameters=\((.*?)\n\s*\)", script, re.S).group(1)
    names = [entry.split("=", 1)[0] for entry in shlex.split(block, comments=True)]
    assert {"input", "output", "run_id", "sdk_container_image"} <= set(names)
    assert [name for name in names if f"--{name}" not in PIPELINE_FLAGS] == []
    assert os.stat(DEPLOY / "dataflow" / "launch.sh").st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(DEPLOY / "dataflow" / "launch.sh")], check=True)


def _cronjob_script() -> str:
    documents = list(yaml.safe_load_all(CRONJOB.read_text()))
    (cronjob,) = [document for document in documents if document["kind"] == "CronJob"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]


def run_cronjob_script(tmp_path: Path, run_date: str) -> list[str]:
    """The arguments the CronJob passes to `mosaic-it` on `run_date` (a stub records them)."""
    stub = tmp_path / "bin" / "mosaic-it"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nfor arg in "$@"; do printf "%s\\n" "$arg"; done\n')
    stub.chmod(0o755)
    (config,) = [d for d in yaml.safe_load_all(CRONJOB.read_text()) if d["kind"] == "ConfigMap"]
    env = {**config["data"], "RUN_DATE": run_date, "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["sh", "-c", _cronjob_script()], env=env, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def _value(arguments: list[str], flag: str) -> str:
    return arguments[arguments.index(flag) + 1]


def test_each_scheduled_run_gets_its_own_folder_and_fresh_epochs(tmp_path):
    first, third = run_cronjob_script(tmp_path, "2025-01-01"), run_cronjob_script(tmp_path, "2025-01-03")
    assert first[0] == "run" and _value(third, "--run-id") == "2025-01-03"
    assert (_value(first, "--epoch-offset"), _value(third, "--epoch-offset")) == ("0", "8")  # 4 epochs a day
    assert run_cronjob_script(tmp_path, "2025-01-03") == third  # a rerun of a date repeats it exactly


@pytest.fixture(scope="module")
def dag(tmp_path_factory) -> dict:
    """The DAG file run against stand-ins for the Airflow classes it uses; returns its globals."""
    operators = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            operators.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    stubs = {
        "airflow": {"DAG": type("DAG", (Recorder,), {})},
        "airflow.providers.apache.beam.operators.beam": {
            "BeamRunPythonPipelineOperator": type("BeamRunPythonPipelineOperator", (Recorder,), {})
        },
        "airflow.providers.google.cloud.operators.dataflow": {
            "DataflowConfiguration": type("DataflowConfiguration", (Recorder,), {})
        },
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    for name, attributes in stubs.items():
        sys.modules[name] = types.SimpleNamespace(**attributes)
    try:
        namespace = runpy.run_path(str(DAG))
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    return {**namespace, "operators": {type(op).__name__: op.kwargs for op in operators}}


def test_the_airflow_dag_passes_only_existing_options_and_never_overlaps(dag):
    assert dag["operators"]["DAG"]["max_active_runs"] == 1
    task = dag["operators"]["BeamRunPythonPipelineOperator"]
    assert (task["py_options"], task["py_file"]) == (["-m"], "pipeline.launch")
    assert (REPO / "pipeline" / "launch.py").is_file()
    assert task["pipeline_options"]["run_id"] == "{{ ds }}"
    for options in [task["pipeline_options"], *dag["RUNNER_OPTIONS"].values()]:
        assert [name for name in options if f"--{name}" not in PIPELINE_FLAGS] == []


def test_the_airflow_dag_and_the_cronjob_advance_epochs_alike(dag, tmp_path):
    for run_date in ("2025-01-01", "2025-01-02", "2025-02-11"):
        assert dag["epoch_offset"](run_date) == int(_value(run_cronjob_script(tmp_path, run_date), "--epoch-offset"))


def test_the_launch_module_runs_the_pipeline_as_the_flex_template_launcher_does(tmp_path):
    """The launcher runs FLEX_TEMPLATE_PYTHON_PY_FILE as a script, with pipeline options only."""
    output = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "pipeline" / "launch.py"),
            "--input",
            *write_corpus(tmp_path / "corpus"),
            "--output",
            str(output),
            "--epochs",
            "1",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        capture_output=True,
    )
    assert json.loads((output / "manifest.json").read_text())["counts"]["records_read"] == 202


# The Dockerfile: one image for the Flex Template launcher and the SDK workers.
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
INSTRUCTIONS = [
    line.split(maxsplit=1)
    for line in DOCKERFILE.replace("\\\n", " ").splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
PINS = {
    Requirement(line).name: Requirement(line)
    for line in (DEPLOY / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def _instructions(keyword: str) -> list[str]:
    return [rest for word, rest in INSTRUCTIONS if word == keyword]


def test_the_image_builds_on_the_beam_sdk_and_launcher_images_of_one_python_and_beam_version():
    args = dict(rest.split("=", 1) for rest in _instructions("ARG") if "=" in rest)
    launcher, sdk = _instructions("FROM")
    assert launcher.startswith("gcr.io/dataflow-templates-base/python311-template-launcher-base:")
    assert sdk == "apache/beam_python3.11_sdk:${BEAM_VERSION}"
    assert str(PINS["apache-beam"].specifier) == f"=={args['BEAM_VERSION']}"
    python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(python).contains("3.11")


def test_the_image_installs_every_runtime_dependency_pinned_within_the_project_range():
    for requirement in map(
        Requirement, tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ):
        pin = PINS.get(requirement.name)
        assert pin is not None, f"{requirement.name} is not pinned in deploy/requirements.txt"
        (exact,) = pin.specifier
        assert exact.operator == "==" and requirement.specifier.contains(exact.version), (requirement, pin)


def test_the_image_copies_the_project_and_its_entry_points_point_at_copied_files():
    workdir = Path(_instructions("WORKDIR")[-1])
    copied = {}  # path in the image -> path in the repository
    for rest in _instructions("COPY"):
        if rest.startswith("--from"):
            continue
        *sources, destination = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file"
            into_folder = len(sources) > 1 or destination.endswith("/") or destination == "."
            copied[workdir / destination / Path(source).name if into_folder else workdir / destination] = REPO / source
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in {pattern.rstrip("*") for pattern in packages}:
        assert copied.get(workdir / package) == REPO / package, f"the image does not copy the package {package}"

    env = dict(rest.split("=", 1) for rest in _instructions("ENV"))
    py_file = Path(env["FLEX_TEMPLATE_PYTHON_PY_FILE"])
    (source,) = [repo / py_file.relative_to(image) for image, repo in copied.items() if py_file.is_relative_to(image)]
    assert source == REPO / "pipeline" / "launch.py" and source.is_file()
    assert _instructions("ENTRYPOINT") == ['["/opt/apache/beam/boot"]']
    runs = " && ".join(_instructions("RUN"))
    assert "pip install --no-cache-dir -r deploy/requirements.txt" in runs and "pip check" in runs
