"""data/README.md's generated tables, all from the dataset records: every file calip3d fetches (sources in order, sizes,
published checksums; through `calip3d.fetch.sources`), and the 2D and 3D datasets with their folders, published class
and split counts and where they come from. A table is found in the README by its header line and ends at the first
line that is not a table row. `python -m calip3d.fetch.readme` rewrites them all in data/README.md; a test checks that
the README holds exactly these tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from calip3d.errors import CalipError
from calip3d.records import IMAGES, POINTS, DatasetRecord, SplitSizes, records
from calip3d.records.points import SCANOBJECTNN_H5_DIR

from .download import source_urls
from .sources import RELEASES, Dataset, Release, RemoteFile
from .status import command_names

README = Path(__file__).resolve().parents[2] / "data" / "README.md"
HEADER = ("| dataset | file | bytes | checksum | sources, in order |", "|---|---|---:|---|---|")
IMAGE_HEADER = ("| `--dataset` | folder | classes | train / val / test | images from (official source) |",
                "|---|---|---:|---|---|")
POINT_HEADER = ("| `--dataset` | folder | classes | train / test | release |", "|---|---|---:|---|---|")


def sources_table() -> str:
    """The Markdown table: one row per file and alternative of each release, in the order of `fetch --list`."""
    lines = list(HEADER)
    for entry in RELEASES.values():
        names = ", ".join(f"`{name}`" for name in command_names(entry))
        for file in entry.files:
            for n, choice in enumerate(file.choices()):
                cells = (names, f"{'or ' * (n > 0)}`{choice.name}`", _size(choice),
                         f"`{choice.checksum}`" if choice.checksum else "none published", _sources(entry, choice))
                lines.append(_row(cells))
                names = ""
    return "\n".join(lines)


def image_table() -> str:
    """The 2D datasets in the records' order: name, folder, CoOp's published class and split counts (a val split
    that is the test split, ImageNet's, shows as `= test`) and where the images come from (`Release.origin`)."""
    lines = list(IMAGE_HEADER)
    for record in records(IMAGES):
        release, sizes = _release_sizes(record)[0]
        val = "= test" if sizes.val is None else f"{sizes.val:,}"
        lines.append(_row((f"`{record.name}`", f"`{record.require('image').folder}/`", str(sizes.classes),
                           f"{sizes.train:,} / {val} / {sizes.test:,}", release.origin)))
    return "\n".join(lines)


def point_table() -> str:
    """The 3D datasets: one row per set of files read (a release; for a ScanObjectNN variant, its h5 files), in the
    records' order, shared by the datasets read from the same files (ModelNet40 and ModelNet10 from the resampled
    release). A row names the format where a dataset has several, and the words of a title its name does not say
    (PB_T50_RS); the published class and train / test counts (after the first dataset, each with its title); the
    release's origin on its first row, then `same`."""
    rows: dict[tuple[str, tuple[str, str] | None], list[tuple[DatasetRecord, SplitSizes]]] = {}
    releases: dict[str, Release] = {}
    for record in records(POINTS):
        for release, sizes in _release_sizes(record):
            rows.setdefault((release.key, record.require("points").h5_file), []).append((record, sizes))
            releases.setdefault(release.key, release)
    lines, shown = list(POINT_HEADER), set()
    for (key, h5_file), group in rows.items():
        release = releases[key]
        notes = [release.fmt] if any(len(record.points.formats) > 1 for record, _ in group) else []
        notes += [word for record, _ in group for word in record.title.split() if _norm(word) not in _norm(record.name)]
        label = " / ".join(f"`{record.name}`" for record, _ in group) + (f" ({', '.join(notes)})" if notes else "")
        folder = "/".join((release.folder, SCANOBJECTNN_H5_DIR, h5_file[0]) if h5_file else (release.folder,))
        counts = "; ".join(f"{record.title + ' ' if n else ''}{sizes.train:,} / {sizes.test:,}"
                           for n, (record, sizes) in enumerate(group))
        classes = " / ".join(str(sizes.classes) for _, sizes in group)
        lines.append(_row((label, f"`{folder}/`", classes, counts, "same" if key in shown else release.origin)))
        shown.add(key)
    return "\n".join(lines)


def _release_sizes(record: DatasetRecord) -> list[tuple[Release, SplitSizes]]:
    """Each release of `record` with its published sizes; a record without one per release is a CalipError."""
    releases, sizes = record.require("releases"), record.require("sizes")
    if len(sizes) != len(releases):
        raise CalipError(f"{record.name}: its dataset record has {len(sizes)} published sizes for {len(releases)} "
                         "releases; give one per release, in their order")
    return list(zip(releases, sizes))


TABLES: dict[str, Callable[[], str]] = {"sources": sources_table, "2D datasets": image_table, "3D datasets": point_table}


def rewrite(text: str) -> str:
    """`text` (data/README.md's) with each generated table replaced by the one the records give now; a table whose
    header line `text` lacks is a CalipError."""
    lines = text.split("\n")
    for what, table in TABLES.items():
        rows = table().split("\n")
        if rows[0] not in lines:
            raise CalipError(f"data/README.md has no table of {what} to rewrite (its header line is missing)")
        start = lines.index(rows[0])
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        lines[start:end] = rows
    return "\n".join(lines)


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _size(file: RemoteFile) -> str:
    if file.size is not None:
        return f"{file.size:,}"
    return f"~{file.size_hint}" if file.size_hint else "—"


def _sources(entry: Dataset, file: RemoteFile) -> str:
    if entry.access == "manual":
        return "**manual only**" + (f" (Drive `{file.gdrive_id}`)" if file.gdrive_id else "")
    urls = source_urls(file)
    if not urls:
        return "**`--mirror` only** (official host gone)"
    return "<br>".join(f"{n}. {url}" for n, url in enumerate(urls, 1))


if __name__ == "__main__":
    before = README.read_text()
    after = rewrite(before)
    if after != before:
        README.write_text(after)
    print(f"{README}: {'rewritten' if after != before else 'up to date'}")
