"""Sharded encoding over the ranks of a torchrun job: the shard plan, batches that do not depend on the shards, and
`torch.distributed.run --standalone --nproc_per_node 2` (gloo, CPU) against one process on the real Caltech101 split
and ModelNet40 sample with a tiny model: same JSON, the split recorded, one cache whatever the number of ranks, and a
failing rank that ends the job with its error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from calip3d.backbone import CLIPBackbone
from calip3d.cache import FeatureCache
from calip3d.cli.eval import main as eval_main
from calip3d.cli.fewshot import main as fewshot_main
from calip3d.cli.tune_views import main as tune_views_main
from calip3d.distributed import Progress, Ranks
from calip3d.encoding import Encoder, Loading, terms_reducer
from tiny_models import build_tiny, write_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tinydist"), "resnet", seed=1)


@pytest.fixture
def one_thread():
    """One process with the threads torchrun gives each rank (OMP_NUM_THREADS=1): CPU kernels may split their sums
    differently with more threads, which is not a matter of ranks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ shards and batches


@pytest.mark.parametrize("n, world", [(40, 2), (29, 2), (7, 3), (3, 4), (1, 2), (100, 8)])
def test_shards_are_contiguous_even_and_cover_every_item_once(n, world):
    shards = [Ranks(rank=r, world_size=world).shard(n) for r in range(world)]
    assert [i for shard in shards for i in shard] == list(range(n))
    sizes = [len(s) for s in shards]
    assert sizes == Ranks(world_size=world).sizes(n) and max(sizes) - min(sizes) <= 1
    assert all(sizes) == (n >= world)


def test_batch_rows_keep_the_batches_of_the_whole_split():
    loading = Loading(None, None, batch_size=16, workers=0, device=torch.device("cpu"), image_size=64)
    assert loading.batch_rows(40) == [range(0, 16), range(16, 32), range(32, 40)]
    # the shard of items 20..39 starts 4 items into a batch of 16: its first batch ends where that one ends
    shard = [range(20 + r.start, 20 + r.stop) for r in replace(loading, offset=4).batch_rows(20)]
    assert shard == [range(20, 32), range(32, 40)]
    assert loading.batch_rows(0) == []


class Images:
    """An `Encodable` of random images `[N, 3, S, S]` (batched as a real split is)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> dict[str, Any]:
        return {"random": len(self)}

    def subset(self, rows: range) -> "Images":
        return Images(self.images[rows.start:rows.stop])

    def batches(self, loading: Loading) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for rows in loading.batch_rows(len(self)):
            yield self.images[rows.start:rows.stop], torch.zeros(len(rows), dtype=torch.long), torch.tensor(rows)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_each_item_is_encoded_as_in_one_process_whatever_the_shards(world, one_thread):
    """A shard's batches are the whole split's, zero-padded: bit-identical terms per item. (Batches cut at the shard
    boundaries instead give the tiny ResNet's CPU kernels other shapes and different last bits.)"""
    backbone = CLIPBackbone(build_tiny("resnet", 1))
    split = Images(torch.randn(23, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    reduce = terms_reducer(torch.nn.functional.normalize(torch.randn(5, 32), dim=-1), 0.5)

    def encode(rank: int, size: int) -> dict[str, torch.Tensor] | None:
        loading = Loading(None, None, batch_size=8, workers=0, device=torch.device("cpu"), image_size=64)
        encoder = Encoder(backbone, loading, 0.5, FeatureCache(None), Ranks(rank=rank, world_size=size))
        return encoder._encode(split, reduce, Progress(len(split), "test"))[1]

    whole = encode(0, 1)
    parts = [encode(rank, world) for rank in range(world)]
    merged = {key: torch.cat([p[key] for p in parts if p is not None]) for key in whole}
    assert torch.equal(merged["indices"], torch.arange(23))
    for key in whole:
        assert torch.equal(merged[key], whole[key]), key


class RankZeroOfTwo(Ranks):
    """Rank 0 of a 2-rank job without processes: rank 1's encoded part is `other`, or rank 1 died (None)."""

    def __init__(self, other: tuple[int, dict[str, torch.Tensor] | None] | None) -> None:
        super().__init__(rank=0, world_size=2, store=Counts())
        self.other = other

    def agree(self, value: Any) -> Any:
        return value

    def gather(self, value: Any) -> list[Any]:
        if self.other is None:
            raise RuntimeError("rank 1 is gone")
        return [value, self.other]


class Counts(dict):
    """The store's `add`, in memory."""

    def add(self, key: str, n: int) -> int:
        self[key] = self.get(key, 0) + n
        return self[key]


def test_an_interrupted_job_resumes_from_its_shard_entries(tmp_path, one_thread):
    """Rank 0 wrote its shard entry before rank 1 died; the rerun reuses it (0 items encoded), writes the merged
    entry under the one-process key, equal to one process's, and removes the shard entry."""
    backbone = CLIPBackbone(build_tiny("resnet", 1))
    split = Images(torch.randn(11, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    text = torch.nn.functional.normalize(torch.randn(5, 32, generator=torch.Generator().manual_seed(2)), dim=-1)
    loading = Loading(None, None, batch_size=4, workers=0, device=torch.device("cpu"), image_size=64)

    def encoder(ranks: Ranks, folder: str) -> Encoder:
        return Encoder(backbone, loading, 0.5, FeatureCache(tmp_path / folder), ranks)

    one = encoder(Ranks(), "one").terms(split, text, "p", "test")
    rank1 = encoder(Ranks(rank=1, world_size=2), "unused")._encode(
        split, terms_reducer(text, 0.5), Progress(11, "test"))
    with pytest.raises(RuntimeError, match="rank 1 is gone"):
        encoder(RankZeroOfTwo(None), "two").terms(split, text, "p", "test")
    (shard,) = (tmp_path / "two").glob("terms-*.pt")  # rank 0's shard, items 0..5
    assert torch.load(shard, weights_only=True)["spec"]["rows"] == [0, 6]

    rerun = encoder(RankZeroOfTwo(rank1), "two")
    two = rerun.terms(split, text, "p", "test")
    assert rerun.items_per_rank == [0, 5] and rerun.cache.last_status == "miss"
    assert [f.name for f in (tmp_path / "two").glob("*.pt")] == [f.name for f in (tmp_path / "one").glob("*.pt")]
    for key, value in one.tensors().items():
        assert torch.equal(two.tensors()[key], value), key


# ------------------------------------------------------------------------------------------------ torchrun jobs


def _torchrun(module_args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", *module_args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=timeout)


def _numbers(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the result without its provenance, the provenance)."""
    result = json.loads(path.read_text())
    return result, result.pop("provenance")


def _entries(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f.name: torch.load(f, weights_only=True)["tensors"] for f in sorted(folder.glob("*.pt"))}


def _caltech_argv(tiny, root, tmp_path, cache: str, output: str, *extra: str) -> list[str]:
    return ["--dataset", "caltech101", "--data-root", str(root), "--backbone", str(tiny[0]), "--pretrained",
            str(tiny[1]), "--limit", "40", "--tune-limit", "30", "--tune-on", "test", "--workers", "0",
            "--batch-size", "16", "--cache-dir", str(tmp_path / cache), "--output", str(tmp_path / output), *extra]


def test_two_ranks_give_one_process_results_and_share_its_cache(tiny, caltech_root, tmp_path, one_thread):
    assert eval_main(_caltech_argv(tiny, caltech_root, tmp_path, "one", "one.json")) == 0
    proc = _torchrun(["calip3d.eval", *_caltech_argv(tiny, caltech_root, tmp_path, "two", "two.json")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    one, one_prov = _numbers(tmp_path / "one.json")
    two, two_prov = _numbers(tmp_path / "two.json")
    assert two == one
    assert (two_prov["world_size"], two_prov["backend"], two_prov["items_per_rank"]) == (2, "gloo", [20, 20])
    assert (one_prov["world_size"], one_prov["items_per_rank"]) == (1, [40])
    assert two_prov["sharding"] == "contiguous" and two_prov["cache"] == "miss"
    assert proc.stdout.count("calip_tuned") == 1 and proc.stdout.count("results written") == 1  # rank 0 alone

    # one merged entry per split under the one-process key, bit-identical; no shard entry left behind
    one_entries, two_entries = _entries(tmp_path / "one"), _entries(tmp_path / "two")
    assert sorted(two_entries) == sorted(one_entries) and len(one_entries) == 2
    for name, tensors in one_entries.items():
        assert all(torch.equal(tensors[k], two_entries[name][k]) for k in tensors), name

    # a later single process reuses the 2-rank entries, a later 2-rank job the single process's
    assert eval_main(_caltech_argv(tiny, caltech_root, tmp_path, "two", "again.json")) == 0
    again, again_prov = _numbers(tmp_path / "again.json")
    assert again == one and again_prov["cache"] == "hit"
    proc = _torchrun(["calip3d.eval", *_caltech_argv(tiny, caltech_root, tmp_path, "one", "hit.json")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    hit, hit_prov = _numbers(tmp_path / "hit.json")
    assert hit == one and hit_prov["cache"] == "hit" and hit_prov["items_per_rank"] == [0, 0]


def test_two_ranks_tune_views_and_fewshot_on_modelnet40(tiny, modelnet_h5_dir, tmp_path, one_thread):
    root = modelnet_h5_dir.parent
    common = ["--dataset", "modelnet40", "--data-root", str(root), "--backbone", str(tiny[0]), "--pretrained",
              str(tiny[1]), "--batch-size", "8", "--workers", "0"]
    views = [*common, "--shots", "1", "--rounds", "1", "--restarts", "0", "--no-cache"]
    assert tune_views_main([*views, "--output", str(tmp_path / "views1.json")]) == 0
    proc = _torchrun(["calip3d", "tune-views", *views, "--output", str(tmp_path / "views2.json")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (one, _), (two, prov) = _numbers(tmp_path / "views1.json"), _numbers(tmp_path / "views2.json")
    assert two == one and prov["items_per_rank"] == [15, 14]  # the 29 test clouds

    # few-shot: rank 0 trains; each rank scores its test shard with rank 0's module
    fewshot = [*common, "--shots", "1", "--epochs", "2", "--views", "6"]
    for name, run in (("fs1", fewshot_main), ("fs2", None)):
        argv = [*fewshot, "--split-dir", str(tmp_path / name), "--output", str(tmp_path / f"{name}.json"),
                "--checkpoint", str(tmp_path / f"{name}.pt")]
        if run:
            assert run(argv) == 0
        else:
            proc = _torchrun(["calip3d", "fewshot", *argv], tmp_path)
            assert proc.returncode == 0, proc.stderr
    (one, _), (two, prov) = _numbers(tmp_path / "fs1.json"), _numbers(tmp_path / "fs2.json")
    for key in ("split_file", "checkpoint"):
        assert one.pop(key) != two.pop(key)
    assert two == one and two["history"] and prov["items_per_rank"] == [15, 14]


def _small_caltech(caltech_root: Path, folder: Path, count: int) -> list[Path]:
    """A CoOp-layout copy of the first `count` Caltech101 test images (also its train and val split)."""
    source = caltech_root / "caltech-101"
    items = json.loads((source / "split_zhou_Caltech101.json").read_text())["test"][:count]
    target = folder / "caltech-101"
    paths = []
    for rel, _, _ in items:
        path = target / "101_ObjectCategories" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "101_ObjectCategories" / rel, path)
        paths.append(path)
    (target / "split_zhou_Caltech101.json").write_text(json.dumps({"train": items, "val": items, "test": items}))
    return paths


def test_a_failing_rank_ends_the_job_with_its_error(tiny, caltech_root, tmp_path):
    paths = _small_caltech(caltech_root, tmp_path / "data", 8)
    paths[6].write_bytes(b"not an image")  # in rank 1's shard (items 4..7)
    start = time.monotonic()
    proc = _torchrun(["calip3d.eval", "--dataset", "caltech101", "--data-root", str(tmp_path / "data"),
                      "--backbone", str(tiny[0]), "--pretrained", str(tiny[1]), "--workers", "0", "--batch-size", "2",
                      "--no-cache", "--output", str(tmp_path / "out.json")], tmp_path, timeout=240)
    assert proc.returncode != 0 and time.monotonic() - start < 180
    assert f"error: rank 1: cannot read image {paths[6]}" in proc.stderr
    assert not (tmp_path / "out.json").exists()
    # calip3d itself prints no traceback (torchrun's own failure summary may)
    assert f'File "{REPO / "calip3d"}' not in proc.stderr and "CalipError" not in proc.stderr


def test_a_rank_that_never_arrives_times_out(tmp_path):
    """A live rank that does not reach a collective (a stuck data loader, say): the others stop after the timeout."""
    script = tmp_path / "stuck.py"
    script.write_text(
        "import time\nfrom datetime import timedelta\nfrom calip3d.distributed import session\n"
        "from calip3d.errors import run_cli\n\n"
        "def main():\n"
        "    with session('cpu', timedelta(seconds=3)) as ranks:\n"
        "        if ranks.rank == 1:\n"
        "            time.sleep(60)\n"
        "        ranks.gather(ranks.rank)\n\n"
        "run_cli(main)\n")
    start = time.monotonic()
    proc = _torchrun([script.stem], tmp_path, timeout=120)
    assert proc.returncode != 0 and time.monotonic() - start < 50
    assert "error: rank 0: gathering the encoded shards on rank 0 failed" in proc.stderr
    assert "0.05 min (Ranks.timeout)" in proc.stderr  # the library's session: the field, not the flag
