"""`mosaic-it report DIR`: DIR/report/index.html, one plain page with the figures of a finished run.

The page embeds its figures (it opens offline, alone); the same figures are written
next to it as PNG files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from pipeline.errors import CommandParser, UsageError
from reporting import figures, inspection, outputs, select_figures
from reporting.input_records import InputRecords, read_inputs
from reporting.page import (
    Plot,
    Report,
    Section,
    escape,
    html_table,
    rejections_section,
    render_html,
    shortened,
)
from reporting.run_stats import (
    PROMPT_CHARS,
    Rejections,
    SampleScan,
    SelectScan,
    input_mix,
    mosaic_table,
    scan_rejected,
    scan_samples,
    scan_select,
    select_table,
    strategy_shares,
)
from transforms.files import write_atomically
from transforms.manifest import SELECT_TOOL, token_summary

REPORT_FOLDER = "report"


def mosaic_report(directory: str, manifest: dict) -> Report:
    counts, options = manifest["counts"], manifest["options"]
    found = read_inputs(manifest["inputs"], outputs.sample_lengths(manifest), outputs.input_fields(manifest))
    scan = scan_samples(outputs.samples(directory), found.file_of)
    rejections = scan_rejected(outputs.rejected(directory))
    notes = [
        f"The input {path} is gone: its records are left out of the input record lengths." for path in found.missing
    ]
    if scan.samples != counts["samples"] or sum(rejections.counts.values()) != counts["records_rejected"]:
        notes.append(
            f"The files hold {scan.samples:,} samples and {sum(rejections.counts.values()):,} rejections, "
            f"the manifest counts {counts['samples']:,} and {counts['records_rejected']:,}: the folder changed after the run."
        )
    inputs = _inputs_section(manifest, scan, rejections, found)
    if not scan.samples:
        sections = [inputs, Section("Samples", html="<p>The run wrote no sample.</p>"), rejections_section(rejections)]
        return Report(manifest, mosaic_table(manifest), sections, notes)
    sections = [
        inputs,
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
                ),
                Plot(
                    "tokens_per_strategy",
                    figures.tokens_per_strategy(scan.tokens_by_strategy, options["max_length"]),
                    "Left: n_tokens of the samples of each strategy (box: quartiles and median). Right: each "
                    "strategy's share of the samples and of all their tokens.",
                ),
            ],
        ),
        _strategies_section(manifest, scan),
        rejections_section(rejections),
        Section("Samples", html=_excerpts(directory, manifest)),
    ]
    return Report(manifest, mosaic_table(manifest), sections, notes)


def _inputs_section(manifest: dict, scan: SampleScan, rejections: Rejections, found: InputRecords) -> Section:
    mix = input_mix(found.files, scan, rejections, found.file_of, manifest["options"]["epochs"])
    lengths = [n for file_lengths in found.lengths.values() for n in file_lengths]
    rows = [
        [
            row.file,
            f"{row.records:,}",
            f"{row.rejected:,}",
            f"{row.over_budget:,}",
            f"{row.samples:,}",
            f"{row.slot_share:.1%}",
            *_length_cells(found.lengths.get(row.file, [])),
        ]
        for row in mix
    ]
    header = ["file", "records", "rejected", "over budget", "samples", "share of placed records"]
    header += ["median tokens", "max tokens"]
    plots = [
        Plot(
            "input_mix",
            figures.input_mix(mix),
            "Records read from each input file, packed or rejected, and how many samples (all epochs) hold at "
            "least one of them. A record's file is found by its id in the inputs, read again.",
        )
    ]
    if lengths:
        plots.append(_record_lengths_plot(manifest, lengths, rejections.counts.get("over_budget", 0)))
    return Section(
        "Inputs",
        plots,
        "<p>Per input file. Over budget: rejected as alone longer than --max-length. Samples: samples of all "
        "epochs holding at least one of its records. Share of placed records: of all the records the samples "
        "hold. Tokens: of each record alone.</p>\n" + html_table(header, rows, numeric=range(1, len(header))),
    )


def _record_lengths_plot(manifest: dict, lengths: list[int], rejected_over: int) -> Plot:
    budget = manifest["options"]["max_length"]
    over = sum(n > budget for n in lengths)
    agreement = f"the rejected file lists {rejected_over:,} over_budget records" + (
        "" if over == rejected_over else f", the recount finds {over:,} (the inputs changed since the run)"
    )
    return Plot(
        "record_lengths",
        figures.record_lengths(lengths, budget),
        f"Every input record that parsed, counted alone again with {manifest['tokenizer']} and the "
        f"'{manifest['length_template']}' length template: the length the run compared with --max-length. "
        f"Those over it are rejected as over_budget; {agreement}.",
    )


def _length_cells(lengths: list[int]) -> list[str]:
    if not lengths:
        return ["", ""]
    ordered = sorted(lengths)
    return [f"{ordered[len(ordered) // 2]:,}", f"{ordered[-1]:,}"]


def _strategies_section(manifest: dict, scan: SampleScan) -> Section:
    counts, strategy = manifest["counts"], manifest["options"]["strategy"]
    sizes: Counter = Counter()
    for per_epoch in scan.group_sizes.values():
        sizes.update(per_epoch)
    shares = strategy_shares(strategy, sizes, counts["strategy"])
    rows = [
        [
            share.kind,
            f"{share.drawn:.1%}",
            f"{share.expected:.1%}",
            f"{share.observed:.1%}",
            f"{counts['strategy'].get(share.kind, 0):,}",
        ]
        for share in shares
    ]
    return Section(
        "Strategies and rules",
        [
            Plot(
                "strategies",
                figures.strategies(counts["strategy"], counts["rule"]),
                "A permute or maskout draw whose rule cannot apply to the group becomes a plain format sample.",
            ),
            Plot(
                "strategy_shares",
                figures.strategy_shares(shares, strategy),
                f"--strategy {strategy} draws each of its kinds with equal odds (drawn). A group of one record is "
                "written as a format sample whatever was drawn, so the expected shares count the run's groups of "
                "one. The rest of the gap is the budget's and the rules' doing: a group no drawn rule applies to "
                "becomes a format sample; a lone record too long for any format is written in its plain (primary) "
                "form; a maskout sample leaves responses out, so it is shorter and is cut down to one record (a format "
                "sample) less often than the others.",
            ),
        ],
        html_table(["strategy", "drawn", "expected", "observed", "samples"], rows, numeric=range(1, 5)),
    )


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
        select_figures.pick_scores(scan.pick_scores, "diversity-adjusted score"),
        "The diversity-adjusted score each pick won with, in pick order: its IFD times the weight its response's terms still had "
        "(with --score-type ifd: its IFD).",
    )
    ifd = [
        Plot(
            "ifd",
            select_figures.ifd_distribution(scan.ifd, scan.selected_ifd),
            "IFD of every scored record and of the selected ones, on an axis fitted to the scores; only "
            "records with IFD < 1 are candidates.",
        )
    ]
    if scan.lengths:  # scores written before response_tokens was recorded have none
        ifd.append(
            Plot(
                "ifd_by_length",
                select_figures.ifd_by_length(scan.lengths, scan.selected_lengths),
                "IFD against response_tokens, the response's tokens scored in the conditional text (the model's "
                f"tokenizer, within --max-tokens); above {select_figures.HEXBIN_FROM:,} records the scored ones "
                "are drawn as cells shaded by count.",
            )
        )
    sections = [
        Section("IFD", ifd),
        Section("Picks", [picks], _example_picks(scan)),
        Section(
            "Sources",
            [
                Plot(
                    "selected_per_source",
                    select_figures.selected_per_source(scan.per_source),
                    "Selected records over all records, per input file (ids of the form <file name>:<index>; "
                    "other ids count as 'unknown source').",
                )
            ],
        ),
        rejections_section(rejections),
    ]
    return Report(manifest, select_table(manifest, scan, rejections), sections)


def _example_picks(scan: SelectScan) -> str:
    """The first and the last picks, with their scores and the start of their instruction."""
    if not scan.example_picks:
        return ""
    rows = [
        [
            f"{example.pick:,}",
            example.id,
            f"{example.ifd:.4f}",
            "" if example.score is None else f"{example.score:.4f}",
            "" if example.response_tokens is None else f"{example.response_tokens:,}",
            shortened(example.prompt, PROMPT_CHARS),
        ]
        for example in scan.example_picks
    ]
    header = ["pick", "id", "IFD", "pick score", "response tokens", f"instruction (first {PROMPT_CHARS} characters)"]
    return "<p>The first and the last picks.</p>\n" + html_table(header, rows, numeric=(0, 2, 3, 4))


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
        f"<pre>{escape(text)}</pre>" for text in texts
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
