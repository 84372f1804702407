"""data/README.md's table of every file calip3d fetches (sources in order, sizes, published checksums), generated
from the dataset records through `calip3d.fetch.sources`. `python -m calip3d.fetch.readme` prints it; a test checks
that the README holds exactly this table."""

from __future__ import annotations

from .download import source_urls
from .sources import RELEASES, Dataset, RemoteFile
from .status import command_names

HEADER = ("| dataset | file | bytes | checksum | sources, in order |", "|---|---|---:|---|---|")


def sources_table() -> str:
    """The Markdown table: one row per file and alternative of each release, in the order of `fetch --list`."""
    lines = list(HEADER)
    for entry in RELEASES.values():
        names = ", ".join(f"`{name}`" for name in command_names(entry))
        for file in entry.files:
            for n, choice in enumerate(file.choices()):
                cells = (names, f"{'or ' * (n > 0)}`{choice.name}`", _size(choice),
                         f"`{choice.checksum}`" if choice.checksum else "none published", _sources(entry, choice))
                lines.append("| " + " | ".join(cells) + " |")
                names = ""
    return "\n".join(lines)


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
    print(sources_table())
