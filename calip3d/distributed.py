"""Several processes started by torchrun, one device each: which rank this process is, which items it encodes, and the
collectives that bring the encoded shards to rank 0.

`session(device)` joins the torchrun job this process belongs to (`WORLD_SIZE` > 1 in its environment) and leaves it
at the end; in a plain process it joins nothing and every `Ranks` method is a no-op on one rank. Inside a job:

- each rank runs on its own device (`cuda:LOCAL_RANK` for `auto`/`cuda` when GPUs exist, else the CPU) and the
  process group has the gloo backend for CPU tensors (`cpu:gloo,cuda:nccl` with GPUs); every collective here moves
  CPU objects, so gloo carries them, under the session's timeout;
- `Ranks.shard(n)` gives each rank a contiguous run of the items, sizes as even as possible (`Ranks.sizes`);
- `gather` brings each rank's part to rank 0, `agree` and `share` send rank 0's value to every rank;
- only rank 0 prints: the other ranks' stdout and stderr are muted until the session ends (an error raised on any
  rank is still shown, as `rank R: ...`), and `Progress` shows one bar on rank 0 counting the items of all ranks;
- a collective that fails (another rank stopped, or the timeout passed) raises `CalipError` instead of hanging.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .backbone import resolve_device
from .errors import CalipError, user_message

SHARDING = "contiguous"  # each rank encodes one run of consecutive items (recorded in results)
DEFAULT_TIMEOUT = timedelta(minutes=30)


@dataclass
class Ranks:
    """This process's place in a torchrun job (rank 0 of 1 outside one): its `device`, the job's `backend`, the
    store the ranks share and the collectives' `timeout`."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    timeout: timedelta = DEFAULT_TIMEOUT
    store: Any = field(default=None, repr=False)
    counters: int = field(default=0, init=False, repr=False)

    @property
    def main(self) -> bool:
        """Rank 0: the rank that searches, prints and writes results."""
        return self.rank == 0

    def sizes(self, n: int) -> list[int]:
        """Items per rank for `n` items: as even as possible, the first `n % world_size` ranks one more."""
        return [n // self.world_size + (r < n % self.world_size) for r in range(self.world_size)]

    def shard(self, n: int) -> range:
        """The items of `n` this rank encodes (every rank gets some when `n >= world_size`)."""
        sizes = self.sizes(n)
        start = sum(sizes[: self.rank])
        return range(start, start + sizes[self.rank])

    def describe(self, items_per_rank: list[int]) -> dict[str, Any]:
        """The provenance of a run's distribution: world size, backend, sharding and the items each rank encoded."""
        return {"world_size": self.world_size, "backend": self.backend, "sharding": SHARDING,
                "items_per_rank": list(items_per_rank)}

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as err:  # gloo/NCCL: a peer closed its connection, or the timeout passed
            text = str(err).strip() or type(err).__name__
            first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(" This is typically")[0][:240]
            minutes = self.timeout.total_seconds() / 60
            raise CalipError(f"{what} failed: another rank stopped (its error is shown above) or did not answer "
                             f"within {minutes:g} min (Ranks.timeout): {first}") from None

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` on rank 0, in rank order (None on the other ranks)."""
        if self.world_size == 1:
            return [value]
        out = [None] * self.world_size if self.main else None
        with self._collective("gathering the encoded shards on rank 0"):
            dist.gather_object(value, out, dst=0)
        return out

    def agree(self, value: Any) -> Any:
        """Rank 0's `value` (a small picklable object) on every rank."""
        if self.world_size == 1:
            return value
        box = [value if self.main else None]
        with self._collective("waiting for rank 0"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, value: Any) -> Any:
        """Rank 0's `value` on every rank, its tensors moved to this rank's device (for objects holding tensors,
        such as a trained few-shot method)."""
        if self.world_size == 1:
            return value
        payload = None
        if self.main:
            buffer = io.BytesIO()
            torch.save(value, buffer)
            payload = buffer.getvalue()
        payload = self.agree(payload)
        if self.main:
            return value
        return torch.load(io.BytesIO(payload), map_location=self.device, weights_only=False)  # rank 0's own bytes

    def barrier(self) -> None:
        """Wait until every rank got here."""
        self.agree(None)

    def counter(self) -> Callable[[int], int]:
        """A counter shared by the ranks: `add(n)` adds `n` and returns the total so far. Every rank must create its
        counters in the same order (one per sharded encoding)."""
        if self.world_size == 1:
            total = [0]

            def add_local(n: int) -> int:
                total[0] += n
                return total[0]

            return add_local
        self.counters += 1
        key = f"items/{self.counters}"
        return lambda n: int(self.store.add(key, n))


class Progress:
    """A progress bar over `total` items on stderr, fed by `update(n)`. With `ranks` of a torchrun job every rank
    adds its items to a counter the ranks share, and rank 0 alone shows the bar, counting the items of all ranks."""

    def __init__(self, total: int, desc: str, ranks: Ranks | None = None) -> None:
        ranks = ranks or Ranks()
        self.add = ranks.counter()
        self.bar = tqdm(total=total, desc=desc, unit="item", leave=False, dynamic_ncols=True, disable=not ranks.main)

    def update(self, n: int) -> None:
        done = self.add(n)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


_current = Ranks()


def current() -> Ranks:
    """The ranks of the session this process is in (`session`); one rank outside a session."""
    return _current


def launched_by_torchrun() -> bool:
    """Whether this process is one of several started by torchrun (its environment says `WORLD_SIZE` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank_device(flag: str, local_rank: int) -> torch.device:
    """The device of the rank with `local_rank` for `--device flag`: `auto` and `cuda` mean `cuda:LOCAL_RANK` when GPUs
    exist (`auto`: else the CPU); `cpu` and `cuda:N` are used as given."""
    device = resolve_device(flag)
    if device.type == "cuda" and flag in ("auto", "cuda"):
        if local_rank >= torch.cuda.device_count():
            raise CalipError(f"local rank {local_rank} has no GPU of its own: {torch.cuda.device_count()} visible; "
                             "start at most that many processes per node (torchrun --nproc_per_node N)")
        return torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def session(device: str = "auto", timeout: timedelta = DEFAULT_TIMEOUT, mute_others: bool = True) -> Iterator[Ranks]:
    """Join the torchrun job this process was started in, for the duration of the `with` block, and yield its `Ranks`
    (`device`: the `--device` flag, resolved for this rank). Outside torchrun, one rank on `resolve_device(device)`.

    A `CalipError` raised in the block is re-raised as `rank R: ...`; the process group is torn down in every case."""
    global _current
    previous = _current
    if not launched_by_torchrun():
        _current = Ranks(device=resolve_device(device), timeout=timeout)
        try:
            yield _current
        finally:
            _current = previous
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ranks_device = rank_device(device, local_rank)
    backend = "cpu:gloo,cuda:nccl" if ranks_device.type == "cuda" else "gloo"
    if ranks_device.type == "cuda":
        torch.cuda.set_device(ranks_device)
    try:
        store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
        dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank,
                                world_size=world_size, timeout=timeout)
    except (RuntimeError, ValueError) as err:
        raise CalipError(f"cannot join the torchrun job: {str(err).strip().splitlines()[0]}") from None
    ranks = Ranks(rank=rank, world_size=world_size, device=ranks_device, backend=backend, timeout=timeout,
                  local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size))),
                  store=dist.PrefixStore("calip3d", store))
    _current = ranks
    try:
        with _muted(not ranks.main and mute_others):
            yield ranks
    except CalipError as err:
        raise CalipError(f"rank {ranks.rank}: {user_message(err)}") from None
    finally:
        _current = previous
        dist.destroy_process_group()


@contextlib.contextmanager
def _muted(mute: bool) -> Iterator[None]:
    """stdout and stderr to /dev/null while `mute` (restored before an exception leaves the block)."""
    if not mute:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield
