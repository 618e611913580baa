"""`mosaic-it report DIR`: DIR/report/index.html, one plain page with the figures of a finished run.

The page embeds its figures (it opens offline, alone); the same figures are written
next to it as PNG files.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

from pipeline.errors import CommandParser, UsageError
from reporting import figures, inspection, outputs
from reporting.run_stats import (
    Rejections,
    SelectScan,
    mosaic_table,
    scan_rejected,
    scan_samples,
    scan_select,
    select_table,
)
from transforms.files import write_atomically
from transforms.manifest import SELECT_TOOL, token_summary

REPORT_FOLDER = "report"
RECORD_CHARS = 300


@dataclass(frozen=True)
class Plot:
    name: str  # file name, without .png
    png: bytes
    caption: str


@dataclass
class Section:
    title: str
    plots: list[Plot] = field(default_factory=list)
    html: str = ""


@dataclass
class Report:
    manifest: dict
    table: str
    sections: list[Section]
    notes: list[str] = field(default_factory=list)


def mosaic_report(directory: str, manifest: dict) -> Report:
    counts, options = manifest["counts"], manifest["options"]
    scan = scan_samples(outputs.samples(directory))
    rejections = scan_rejected(outputs.rejected(directory))
    notes = []
    if scan.samples != counts["samples"] or sum(rejections.counts.values()) != counts["records_rejected"]:
        notes.append(
            f"The files hold {scan.samples:,} samples and {sum(rejections.counts.values()):,} rejections, "
            f"the manifest counts {counts['samples']:,} and {counts['records_rejected']:,}: the folder changed after the run."
        )
    if not scan.samples:
        sections = [Section("Samples", html="<p>The run wrote no sample.</p>"), _rejections_section(rejections)]
        return Report(manifest, mosaic_table(manifest), sections, notes)
    sections = [
        Section(
            "Group sizes",
            [
                Plot(
                    "group_sizes",
                    figures.group_sizes(scan.group_sizes, options["wrap_mode"], options["wrap_max"]),
                    "Bars: the share of each epoch's samples that join that many records. Dots: the distribution the "
                    "target size is drawn from. Groups end early when the next record would not fit the token budget "
                    "and at the end of a packing key, so small sizes come out more often than drawn.",
                )
            ],
        ),
        Section(
            "Tokens per sample",
            [
                Plot(
                    "n_tokens",
                    figures.token_lengths(scan.n_tokens, options["max_length"], token_summary(scan.n_tokens)),
                    f"n_tokens of every sample, counted with {manifest['tokenizer']} and the "
                    f"'{manifest['length_template']}' length template, against the --max-length budget.",
                )
            ],
        ),
        Section(
            "Strategies and rules",
            [
                Plot(
                    "strategies",
                    figures.strategies(counts["strategy"], counts["rule"]),
                    "A permute or maskout draw whose rule cannot apply to the group becomes a plain format sample.",
                )
            ],
        ),
        _rejections_section(rejections),
        Section("Samples", html=_excerpts(directory, manifest)),
    ]
    return Report(manifest, mosaic_table(manifest), sections, notes)


def _scan_select_run(directory: str, manifest: dict) -> tuple[SelectScan, Rejections]:
    scan = scan_select(
        outputs.json_lines(outputs.matching(directory, "scores-*.jsonl")),
        outputs.json_lines(outputs.matching(directory, "selected-*.jsonl")),
        outputs.json_lines(outputs.matching(directory, "order.jsonl")),
        manifest.get("inputs"),
    )
    return scan, scan_rejected(outputs.rejected(directory))


def select_summary(directory: str) -> str:
    """The table `mosaic-it select` prints at its end, from the folder it wrote."""
    manifest = outputs.read_manifest(directory)
    return select_table(manifest, *_scan_select_run(directory, manifest))


def select_report(directory: str, manifest: dict) -> Report:
    """The report of a `mosaic-it select` run, from its scores, selected records and order."""
    scan, rejections = _scan_select_run(directory, manifest)
    picks = Plot(
        "pick_scores",
        figures.pick_scores(scan.pick_scores, "diversity-adjusted score"),
        "The diversity-adjusted score each pick won with, in pick order: its IFD times the weight its response's terms still had "
        "(with --score-type ifd: its IFD).",
    )
    sections = [
        Section(
            "IFD",
            [
                Plot(
                    "ifd",
                    figures.ifd_distribution(scan.ifd, scan.selected_ifd),
                    "IFD of every scored record and of the selected ones; only records with IFD < 1 are candidates.",
                )
            ],
        ),
        Section("Picks", [picks]),
        Section(
            "Sources",
            [
                Plot(
                    "selected_per_source",
                    figures.selected_per_source(scan.per_source),
                    "Selected records over all records, per input file (ids of the form <file name>:<index>; "
                    "other ids count as 'unknown source').",
                )
            ],
        ),
        _rejections_section(rejections),
    ]
    return Report(manifest, select_table(manifest, scan, rejections), sections)


def _rejections_section(rejections: Rejections) -> Section:
    if not rejections.counts:
        return Section("Rejected records", html="<p>No record was rejected.</p>")
    parts = []
    for reason, n in sorted(rejections.counts.items(), key=lambda item: (-item[1], item[0])):
        rows = "".join(
            f"<tr><td>{_e(row['source'])}</td><td>{_e(row['detail'])}</td><td><code>{_e(_short(row['record']))}</code></td></tr>"
            for row in rejections.examples[reason]
        )
        parts.append(
            f"<h3>{_e(reason)}: {n:,}</h3>\n<table><tr><th>source</th><th>detail</th><th>record</th></tr>{rows}</table>"
        )
    return Section(
        "Rejected records",
        [
            Plot(
                "rejected",
                figures.rejections(rejections.counts),
                "Every input record is in an output or here, with its reason.",
            )
        ],
        "\n".join(parts),
    )


def _excerpts(directory: str, manifest: dict) -> str:
    """The first sample of each strategy, as `mosaic-it inspect` prints it."""
    firsts: dict[str, dict] = {}
    wanted = set(manifest["counts"]["strategy"])
    for sample in outputs.samples(directory):
        firsts.setdefault(sample["strategy"], sample)
        if set(firsts) == wanted:
            break
    chosen = [firsts[name] for name in sorted(firsts)]
    texts = inspection.render_samples(directory, manifest, chosen)
    return "<p>The first sample of each strategy, as <code>mosaic-it inspect</code> prints it.</p>\n" + "\n".join(
        f"<pre>{_e(text)}</pre>" for text in texts
    )


def _short(text: str) -> str:
    return text if len(text) <= RECORD_CHARS else text[: RECORD_CHARS - 1] + "…"


def _e(text) -> str:
    return html.escape(str(text))


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.9em; }
.note { background: #fff4e5; padding: 0.5em; }
"""


def render_html(report: Report, directory: str) -> str:
    manifest = report.manifest
    body = [f"<h1>{_e(manifest['tool'])} report</h1>", f"<p><code>{_e(directory)}</code></p>"]
    body += [f"<p class='note'>{_e(note)}</p>" for note in report.notes]
    body.append(f"<h2>Summary</h2>\n<pre>{_e(report.table)}</pre>")
    for section in report.sections:
        body.append(f"<h2>{_e(section.title)}</h2>")
        for plot in section.plots:
            data = base64.b64encode(plot.png).decode("ascii")
            body.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{_e(plot.name)}'>"
                f"<figcaption>{_e(plot.caption)} ({_e(plot.name)}.png)</figcaption></figure>"
            )
        body.append(section.html)
    options = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v))}</td></tr>" for k, v in manifest.get("options", {}).items()
    )
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in manifest.get("versions", {}).items())
    body.append(f"<h2>Options</h2>\n<table>{options}</table>")
    if versions:
        body.append(f"<p>Versions: {versions}</p>")
    title = f"{manifest['tool']} report"
    return (
        f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>{_e(title)}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def build_report(directory: str) -> Report:
    manifest = outputs.read_manifest(directory)
    if manifest.get("tool") == SELECT_TOOL:
        return select_report(directory, manifest)
    return mosaic_report(directory, manifest)


def write_report(directory: str) -> tuple[Report, str]:
    """Writes DIR/report/index.html and its PNG figures; returns the report and the page's path."""
    report = build_report(directory)
    folder = FileSystems.join(directory, REPORT_FOLDER)
    if not FileSystems.exists(folder):
        FileSystems.mkdirs(folder)
    for section in report.sections:
        for plot in section.plots:
            write_atomically(FileSystems.join(folder, f"{plot.name}.png"), plot.png)
    page = FileSystems.join(folder, "index.html")
    write_atomically(page, render_html(report, directory).encode("utf-8"))
    return report, page


def report_command(argv: Sequence[str]) -> int:
    parser = CommandParser(prog="mosaic-it report", description="Write DIR/report/index.html for a finished run.")
    parser.add_argument("directory", help="The output folder of `mosaic-it run` or `mosaic-it select`.")
    args = parser.parse_args(list(argv))
    try:
        report, page = write_report(args.directory)
    except outputs.OutputsError as err:
        raise UsageError(str(err)) from None
    print(report.table)
    print(f"report: {page}")
    return 0
