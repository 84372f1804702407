"""What the benchmarks print: each line shown at once and kept, a line naming the machine, and the whole report
written to a file (`--output`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


class Report:
    """Lines said so far (`say`), to be written as one file (`write`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self, path: str | Path, append: bool = False) -> Path:
        """Every line to `path` (its folder made; `append` adds to an existing report)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a" if append else "w") as out:
            out.write("\n".join(self.lines) + "\n")
        return path


def machine() -> str:
    """torch's version, its CPU threads and the load average of this machine's CPUs."""
    return (f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
