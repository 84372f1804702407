"""Merge result files into one table: datasets as rows, methods as columns, published numbers beside them.

Reads `calip3d.eval/1` files (every method of the file) and `calip3d.fewshot/1` and `/2` files (the method, as
"<method> <K>-shot"; several seeds of one dataset, method and K are averaged). Rows are named by the files'
`dataset` (2D datasets first, in CoOp's order, then 3D). Columns are methods, prefixed by the model "build"
(`<backbone> <weights>`, as CLIP_benchmark names a model) when files of several builds are merged. A method that has
a comparable published number on some dataset (`calip3d.reference`) is followed by a "<published method> paper"
column and a "Δ <method>" column (ours - paper, in points). One average row per group (2D, 3D) closes the table.
Pure functions; rendering as Markdown or CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .datasets.registry import DATASETS
from .datasets.registry import dataset_order, get_dataset
from .errors import CalipError
from .published import COOP11_MEAN, PublishedResult
from .reference import published_for, run_backbone
from .results import EVAL_SCHEMA, FEWSHOT_SCHEMAS
from . import fewshot, zeroshot  # noqa: F401  (their registries say which published method each method compares with)

DATASET_ORDER = dataset_order()  # as the dataset records give it when imported; tables follow the records live
ORACLE_MARK = "†"


@dataclass(frozen=True)
class Entry:
    """One method's top-1 on one dataset, from one result file."""

    dataset: str
    build: str  # "<backbone> <weights>"
    backbone: str | None
    pretrained: str | None  # open_clip weights tag, None for a local file or random weights
    method: str  # eval method name, or "<fewshot method> <K>-shot"
    top1: float
    oracle: bool
    source: str  # the file it came from
    shots: int | None = None
    paper_method: str | None = None  # key of PAPER_METHODS used for the published number
    seed: int | None = None
    protocol: str | None = None  # few-shot: the protocol the run chose by


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str  # "ours", "paper" or "diff"


@dataclass
class Cell:
    value: float
    oracle: bool = False
    count: int = 1  # seeds averaged (ours), or rows averaged (average rows)


@dataclass
class Table:
    """`rows[label][column key] -> Cell`; `datasets` and `averages` are row labels in order."""

    columns: list[Column]
    datasets: list[str]
    averages: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Cell]] = field(default_factory=dict)
    paper_sources: dict[str, str] = field(default_factory=dict)  # paper column key -> sources used
    paper_of: dict[str, str] = field(default_factory=dict)  # our column key -> its paper column key
    coop_means: dict[str, tuple[str, float]] = field(default_factory=dict)  # ours -> (paper column, 11-dataset mean)

    @property
    def row_labels(self) -> list[str]:
        return self.datasets + self.averages


@dataclass(frozen=True)
class ChartRow:
    """One group of bars in `figures.results_bar_chart`: series name -> top-1 of this run, and the comparable
    published value of the series where there is one."""

    label: str
    values: dict[str, float]
    published: dict[str, float]


def _build(backbone: str | None, info: dict[str, Any]) -> str:
    name = Path(backbone).stem if backbone and backbone.endswith(".json") else (backbone or "?")
    weights = str(info.get("weights", ""))
    if weights.startswith("tag:"):
        tag = weights[4:]
    elif weights.startswith("file:"):
        tag = Path(weights[5:].split(" sha256:")[0]).name
    else:
        tag = weights or "?"
    return f"{name} {tag}"


def entries_from_result(result: dict[str, Any], source: str) -> list[Entry]:
    """The entries of one result dict (eval or few-shot schema); `source` names it in messages."""
    schema = result.get("schema") if isinstance(result, dict) else None
    if schema != EVAL_SCHEMA and schema not in FEWSHOT_SCHEMAS:
        raise CalipError(f"{source} is not a calip3d result file (expected schema {EVAL_SCHEMA} or "
                         f"{' or '.join(FEWSHOT_SCHEMAS)}, found {schema!r})")
    try:
        backbone, tag = run_backbone(result)
        build = _build(backbone, result.get("provenance", {}).get("backbone", {}) or {})
        dataset = str(result["dataset"])
        common = dict(dataset=dataset, build=build, backbone=backbone, pretrained=tag, source=source)
        if schema in FEWSHOT_SCHEMAS:
            shots = int(result["shots"])
            return [Entry(**common, method=f"{result['method']} {shots}-shot", top1=float(result["test"]["top1"]),
                          oracle=bool(result.get("oracle", False)), shots=shots, paper_method=result["method"],
                          seed=result.get("seed"), protocol=result.get("protocol"))]
        return [Entry(**common, method=m, top1=float(result[m]["top1"]), oracle=bool(result[m].get("oracle")),
                      paper_method=m) for m in result["methods"]]
    except (KeyError, TypeError, ValueError) as err:
        raise CalipError(f"{source} is a {schema} file with missing or malformed fields ({err!r})") from None


def read_result(path: str | Path) -> list[Entry]:
    """The entries of one result file; a file that is not a result file is a `CalipError` naming it."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalipError(f"cannot read the result file {path}: {err}") from None
    return entries_from_result(result, str(path))


def _merge(entries: Iterable[Entry]) -> dict[tuple[str, str, str], list[Entry]]:
    """(dataset, build, method) -> entries; several seeds of a few-shot method are kept together, anything else
    twice is an error naming both files."""
    groups: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        group = groups[(entry.dataset, entry.build, entry.method)]
        clash = next((e for e in group if e.shots is None or e.seed == entry.seed), None)
        if clash is not None:
            raise CalipError(f"{entry.source} and {clash.source} both give {entry.method} on {entry.dataset} for "
                             f"{entry.build}; pass one of them")
        group.append(entry)
    return groups


def build_table(entries: Iterable[Entry]) -> Table:
    """Merge entries into a `Table` (see the module docstring for the layout)."""
    groups = _merge(entries)
    if not groups:
        raise CalipError("no results to tabulate")
    seen = list(dict.fromkeys(d for d, _, _ in groups))
    order = dataset_order()
    datasets = sorted(seen, key=lambda d: (order.index(d) if d in order else len(order), seen.index(d)))
    table = Table(columns=[], datasets=datasets, rows={d: {} for d in datasets})
    builds = list(dict.fromkeys(b for _, b, _ in groups))
    for build in builds:
        prefix = f"{build}: " if len(builds) > 1 else ""
        for method in dict.fromkeys(m for _, b, m in groups if b == build):
            _add_method(table, {d: groups[(d, build, method)] for d in datasets if (d, build, method) in groups},
                        f"{build}|{method}", prefix, method)
    _add_averages(table)
    return table


def _add_method(table: Table, groups: dict[str, list[Entry]], key: str, prefix: str, method: str) -> None:
    """Add the column of one (build, method), then, where a comparable published number exists, the published
    column (once per published method and setting of a build) and the Δ column."""
    table.columns.append(Column(key, prefix + method, "ours"))
    papers: dict[str, PublishedResult] = {}
    for dataset, group in groups.items():
        table.rows[dataset][key] = Cell(sum(e.top1 for e in group) / len(group), any(e.oracle for e in group),
                                        len(group))
        first = group[0]
        found = published_for(dataset, first.paper_method or "", first.backbone, first.pretrained, first.shots,
                              first.protocol)
        if found is not None:
            papers[dataset] = found
    first = next(iter(groups.values()))[0]
    mean = published_for(COOP11_MEAN, first.paper_method or "", first.backbone, first.pretrained, first.shots,
                         first.protocol) if set(coop_datasets()) <= set(groups) else None
    if not papers and mean is None:
        return
    some = next(iter(papers.values())) if papers else mean
    setting = "" if some.setting == "zero-shot" else f" {some.setting}"
    paper_key = f"{key.split('|')[0]}|{some.method}{setting}|paper"
    if paper_key not in table.paper_sources:
        table.columns.append(Column(paper_key, f"{prefix}{some.method}{setting} paper", "paper"))
        table.paper_sources[paper_key] = "; ".join(sorted({p.source for p in papers.values()}))
    table.columns.append(Column(f"{key}|diff", f"{prefix}Δ {method}", "diff"))
    table.paper_of[key] = paper_key
    for dataset, published in papers.items():
        table.rows[dataset][paper_key] = Cell(published.value)
        table.rows[dataset][f"{key}|diff"] = Cell(table.rows[dataset][key].value - published.value)
    if mean is not None:  # the papers' mean over the 11 CoOp datasets, beside our 2D average
        table.coop_means[key] = (paper_key, mean.value)
        table.paper_sources[paper_key] += f"; mean over the 11 CoOp datasets: {mean.source}"


def _add_averages(table: Table) -> None:
    """One average row per group of datasets (2D, 3D), or one "average" row when there is one group."""
    groups = {"2D": [d for d in table.datasets if not _is_points(d)],
              "3D": [d for d in table.datasets if _is_points(d)]}
    groups = {name: rows for name, rows in groups.items() if rows}
    for name, rows in groups.items():
        label = f"average ({name})" if len(groups) > 1 else "average"
        cells: dict[str, Cell] = {}
        for column in table.columns:
            values = [table.rows[d][column.key].value for d in rows if column.key in table.rows[d]]
            if values:
                cells[column.key] = Cell(sum(values) / len(values), count=len(values))
        if name == "2D" and set(coop_datasets()) <= set(rows):
            for key, (paper_key, value) in table.coop_means.items():
                cells[paper_key] = Cell(value, count=len(rows))
                cells[f"{key}|diff"] = Cell(cells[key].value - value, count=len(rows))
        table.averages.append(label)
        table.rows[label] = cells


def merge_results(paths: Sequence[str | Path]) -> Table:
    """Read result files and merge them into one `Table`."""
    return build_table([entry for path in paths for entry in read_result(path)])


def _group_size(table: Table, label: str) -> int:
    if label == "average (3D)":
        return sum(_is_points(d) for d in table.datasets)
    if label == "average (2D)":
        return sum(not _is_points(d) for d in table.datasets)
    return len(table.datasets)


def _markdown_cell(table: Table, label: str, column: Column) -> str:
    cell = table.rows[label].get(column.key)
    if cell is None:
        return "-"
    text = f"{cell.value:+.2f}" if column.kind == "diff" else f"{cell.value:.2f}"
    if cell.oracle:
        text += ORACLE_MARK
    if label in table.averages and cell.count < _group_size(table, label):
        text += f" ({cell.count}/{_group_size(table, label)})"
    elif label not in table.averages and column.kind == "ours" and cell.count > 1:
        text += f" ({cell.count} seeds)"
    return text


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table (top-1 %), followed by notes on oracle cells and the published sources."""
    header = ["dataset"] + [c.header for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
    for label in table.row_labels:
        cells = [label] + [_markdown_cell(table, label, c) for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Top-1 accuracy (%). \"paper\" columns: the published number for the same backbone and weights "
             "(calip3d.reference); Δ = this run - paper, in points. Averages over the datasets that have a value "
             "(n/m when some are missing)."]
    if any(cell.oracle for row in table.rows.values() for cell in row.values()):
        notes.append(f"{ORACLE_MARK} ORACLE: tuned on the test labels.")
    notes += [f"- {c.header}: {table.paper_sources[c.key]}" for c in table.columns if c.kind == "paper"]
    return "\n".join(lines + notes) + "\n"


def to_csv(table: Table) -> str:
    """CSV with a header row: dataset, then one column per table column; numbers only (empty when missing)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset"] + [c.header for c in table.columns])
    for label in table.row_labels:
        row = table.rows[label]
        writer.writerow([label] + [f"{row[c.key].value:.2f}" if c.key in row else "" for c in table.columns])
    return buffer.getvalue()


def render(table: Table, path: str | Path) -> str:
    """Markdown for `.md`/`.markdown`, CSV for `.csv` (by `path`'s extension, any case)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".md", ".markdown"):
        return to_markdown(table)
    if suffix == ".csv":
        return to_csv(table)
    raise CalipError(f"cannot tell the table format of {path}: use a .md or .csv file name")


def chart_rows(table: Table) -> list[ChartRow]:
    """Bars for `figures.results_bar_chart`: per dataset (and build), "CLIP / PointCLIP" = clip or pointclip and
    "CALIP" = calip_paper (2D) or calip (3D), each with its comparable published number where there is one."""
    series = {"CLIP / PointCLIP": ("clip", "pointclip"), "CALIP": ("calip_paper", "calip")}
    builds = list(dict.fromkeys(c.key.split("|")[0] for c in table.columns))
    rows = []
    for build in builds:
        for dataset in table.datasets:
            row = table.rows[dataset]
            values, published = {}, {}
            for name, methods in series.items():
                key = next((f"{build}|{m}" for m in methods if f"{build}|{m}" in row), None)
                if key is None:
                    continue
                values[name] = row[key].value
                if table.paper_of.get(key) in row:
                    published[name] = row[table.paper_of[key]].value
            if values:
                label = f"{dataset}\n{build}" if len(builds) > 1 else dataset
                rows.append(ChartRow(label, values, published))
    return rows


def coop_datasets() -> list[str]:
    """The 11 CoOp image datasets (registered image datasets), whose mean the few-shot papers publish."""
    return [name for name, info in DATASETS.items() if not info.is_points]


def _is_points(dataset: str) -> bool:
    """A point-cloud dataset (a name the registry does not know counts as 2D)."""
    try:
        return get_dataset(dataset).is_points
    except CalipError:
        return False
