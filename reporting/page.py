"""The report's page: sections of figures and tables, rendered as one HTML file that embeds its figures."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from reporting import figures
from reporting.run_stats import Rejections

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


def escape(text) -> str:
    return html.escape(str(text))


def shortened(text: str, chars: int = RECORD_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def html_table(header: Sequence[str], rows: Sequence[Sequence], numeric: Collection[int]) -> str:
    """A table; the `numeric` columns (by position) are right-aligned."""

    def cells(tag: str, values: Sequence) -> str:
        return "".join(
            f"<{tag}{' class=num' if position in numeric else ''}>{escape(value)}</{tag}>"
            for position, value in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def rejections_section(rejections: Rejections) -> Section:
    if not rejections.counts:
        return Section("Rejected records", html="<p>No record was rejected.</p>")
    parts = []
    for reason, n in sorted(rejections.counts.items(), key=lambda item: (-item[1], item[0])):
        rows = "".join(
            f"<tr><td>{escape(row['source'])}</td><td>{escape(row['detail'])}</td>"
            f"<td><code>{escape(shortened(row['record']))}</code></td></tr>"
            for row in rejections.examples[reason]
        )
        parts.append(
            f"<h3>{escape(reason)}: {n:,}</h3>\n<table><tr><th>source</th><th>detail</th><th>record</th></tr>{rows}</table>"
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


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; }
img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.9em; }
.note { background: #fff4e5; padding: 0.5em; }
"""


def render_html(report: Report, directory: str) -> str:
    manifest = report.manifest
    body = [f"<h1>{escape(manifest['tool'])} report</h1>", f"<p><code>{escape(directory)}</code></p>"]
    body += [f"<p class='note'>{escape(note)}</p>" for note in report.notes]
    body.append(f"<h2>Summary</h2>\n<pre>{escape(report.table)}</pre>")
    for section in report.sections:
        body.append(f"<h2>{escape(section.title)}</h2>")
        for plot in section.plots:
            data = base64.b64encode(plot.png).decode("ascii")
            body.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{escape(plot.name)}'>"
                f"<figcaption>{escape(plot.caption)} ({escape(plot.name)}.png)</figcaption></figure>"
            )
        body.append(section.html)
    options = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(json.dumps(v))}</td></tr>" for k, v in manifest.get("options", {}).items()
    )
    versions = ", ".join(f"{escape(k)} {escape(v)}" for k, v in manifest.get("versions", {}).items())
    body.append(f"<h2>Options</h2>\n<table>{options}</table>")
    if versions:
        body.append(f"<p>Versions: {versions}</p>")
    title = f"{manifest['tool']} report"
    return (
        f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n<title>{escape(title)}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
