"""Refactor check: run the commands on the real data before and after a change, then compare what they wrote.

    git stash -u  (or check out the old commit)
    python experiments/regression.py run OLD --data ../shared/data
    git stash pop
    python experiments/regression.py run NEW --data ../shared/data --models OLD/models
    python experiments/regression.py compare OLD NEW

`run` writes tiny models calibrated on the data so that their predictions vary (tests/tiny_models.py; pass
`--models` to reuse a run's models: the second run must use the same weights), then 36 runs of `eval`, `classify`,
`fewshot` and `tune-views` over Caltech101, ModelNet40/10 and two folder datasets of their files (every zero-shot and
few-shot method) with their JSON, stdout and feature caches. The folder datasets are written beside the run folder
(`regression_folders/`), so that two runs side by side read the same ones. `compare` reports every JSON key that
differs (ignoring time, command line and library versions; the run folders' paths read alike), each stdout that
differs and each cached tensor that differs; it exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
IGNORED_KEYS = {"time", "command", "versions", "cache"}


def write_models(folder: Path, data: Path) -> dict[str, list[str]]:
    """The backbone flags of each model: varied ResNets for images and clouds, a plain ViT."""
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import write_tiny, write_varied

    made = {"img": write_varied(folder, "images", data), "pc": write_varied(folder, "points", data),
            "vit": write_tiny(folder, "vit", seed=1, name="plain-vit")}
    return {name: ["--backbone", str(config), "--pretrained", str(weights)] for name, (config, weights) in made.items()}


def folders(out: Path) -> dict[str, Path]:
    """The folder datasets of a run (`write_folders`), beside its folder: the runs compared (OLD and NEW side by side)
    read the same paths, so the folder datasets' names, file ids and output file names agree."""
    return {"clouds": out.parent / "regression_folders" / "clouds", "images": out.parent / "regression_folders" / "images"}


def write_folders(out: Path, data: Path) -> None:
    """Two folder datasets of the shared files, copied with their modification times (so that two runs' file lists,
    and so their digests, agree): ModelNet40 shapes as .txt clouds under train/ and test/ (the release's lists), and
    the first 6 images of 5 Caltech101 classes in the flat layout (a test split only)."""
    shapes, clouds = data / "modelnet40_normal_resampled", folders(out)["clouds"]
    for split in ("train", "test"):
        for shape_id in (shapes / f"modelnet40_{split}.txt").read_text().split():
            cls = shape_id.rsplit("_", 1)[0]
            (clouds / split / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy2(shapes / cls / f"{shape_id}.txt", clouds / split / cls / f"{shape_id}.txt")
    images = folders(out)["images"]
    for cls in ("Faces", "Leopards", "Motorbikes", "accordion", "airplanes"):
        (images / cls).mkdir(parents=True, exist_ok=True)
        for path in sorted((data / "caltech-101" / "101_ObjectCategories" / cls).glob("*.jpg"))[:6]:
            shutil.copy2(path, images / cls / path.name)


def commands(out: Path, data: Path, models: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every run by name: `python -m calip3d SUBCOMMAND ...` arguments."""
    img, pc, vit = models["img"], models["pc"], models["vit"]
    cache = ["--cache-dir", str(out / "cache"), "--workers", "0"]
    root = ["--data-root", str(data)]
    shape = data / "modelnet40_normal_resampled"
    runs = {
        "e1": ["eval", "--dataset", "caltech101", *img, "--limit", "200", "--tune-limit", "150", "--tune-on", "test"],
        "e2": ["eval", "--dataset", "Caltech-101", *vit, "--limit", "60", "--tune-limit", "60", "--betas", "1,2,0.05"],
        "e3": ["eval", "--dataset", "caltech101", *img, "--split", "val", "--limit", "100"],
        "e4": ["eval", "--dataset", "modelnet40", *pc, "--tune-on", "test"],
        "e5": ["eval", "--dataset", "modelnet40", *pc, "--format", "resampled", "--projector", "realistic",
               "--views", "6", "--view-weights", "1,2,3,1,2,3"],
        "e6": ["eval", "--dataset", "modelnet40", *pc, "--view-weights", "paper", "--distance", "1.7",
               "--resolution", "100", "--points", "512", "--sampling", "fps", "--limit", "20"],
        "e7": ["eval", "--dataset", "modelnet10", *pc, "--templates", "single", "--tune-shots", "2"],
        "t1": ["tune-views", "--dataset", "modelnet40", *pc, "--oracle"],
        "e8": ["eval", "--dataset", "caltech101", *img, "--limit", "150", "--tune-limit", "100",
               "--methods", "clip,calip_paper,calip_tuned,tda,calip_tda"],
        "e9": ["eval", "--dataset", "modelnet40", *pc, "--tune-shots", "2", "--memory-shots", "1", "--stream-seeds",
               "1,2", "--methods", "pointclip,calip_tuned,tda,calip_tda,point_nn,pointclip_pointnn,calip_pointnn"],
    }
    folder = folders(out)
    runs["e10"] = ["eval", "--dataset", f"folder:{folder['clouds']}", *pc, "--tune-shots", "1"]
    runs["e11"] = ["eval", "--dataset", str(folder["images"]), *img, "--tune-on", "none", "--betas", "1,2,0.05"]
    runs = {name: [*argv, *root, *cache] for name, argv in runs.items()}
    runs["c1"] = ["classify", str(shape / "chair/chair_0391.txt"), str(shape / "airplane/airplane_0703.txt"),
                  str(shape / "lamp/lamp_0043.txt"), "--label-set", "modelnet40", *pc]
    runs["c2"] = ["classify", str(shape / "chair/chair_0391.txt"), "--labels", "chair", "table", "lamp", "sofa", *pc,
                  "--views", "10", "--betas", "1,2,0.1", "--template", "a {}."]
    few = [*root, "--workers", "0", "--shots", "1", "--epochs", "2", "--split-dir", str(out / "splits")]
    for method in ("calip-fs", "tip-adapter", "tip-adapter-f", "linear-probe", "zero-shot", "gda", "ape", "tip-x"):
        runs[f"f2d-{method}"] = ["fewshot", "--dataset", "caltech101", *img, *few, "--method", method, "--limit", "100"]
    for method in ("calip-fs", "tip-adapter", "tip-adapter-f", "linear-probe", "zero-shot", "pointclip-adapter",
                   "gda", "ape", "tip-x", "point-nn"):
        runs[f"f3d-{method}"] = ["fewshot", "--dataset", "modelnet40", *pc, *few, "--method", method]
    runs["f3d-gda-calip"] = ["fewshot", "--dataset", "modelnet40", *pc, *few, "--method", "gda", "--base", "calip",
                             "--protocol", "release"]
    runs["f3d-pnn-all"] = ["fewshot", "--dataset", "modelnet40", *pc, *few, "--method", "point-nn", "--shots", "all",
                           "--base", "calip", "--pointnn-shuffle"]
    runs["f-folder"] = ["fewshot", "--dataset", f"folder:{folder['clouds']}", *pc, *few, "--method", "tip-adapter"]
    runs["f3d-aug"] = ["fewshot", "--dataset", "modelnet40", *pc, *few, "--method", "tip-adapter-f", "--shots", "2",
                       "--augment", "2", "--cache-tokens", str(out / "tok")]
    return {name: [*argv, "--output", str(out / f"{name}.json")] for name, argv in runs.items()}


def run(out: Path, data: Path, models: Path | None, only: list[str] | None = None) -> int:
    """Every run into `out` (emptied first), or with `only` those runs again into an earlier run's `out`."""
    if only:
        flags = json.loads((out / "models" / "flags.json").read_text())
        chosen = commands(out, data, flags)
        unknown = sorted(set(only) - set(chosen))
        if unknown:
            raise SystemExit(f"unknown runs: {', '.join(unknown)}; the runs are {', '.join(chosen)}")
        write_folders(out, data)
        return _run_commands({name: chosen[name] for name in only}, out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if models is None:
        flags = write_models(out / "models", data)
    else:
        shutil.copytree(models, out / "models")
        flags = json.loads((models / "flags.json").read_text())
        flags = {k: [v.replace(str(models), str(out / "models")) for v in argv] for k, argv in flags.items()}
    (out / "models" / "flags.json").write_text(json.dumps(flags))
    write_folders(out, data)
    return _run_commands(commands(out, data, flags), out)


def _run_commands(runs: dict[str, list[str]], out: Path) -> int:
    failed = 0
    for name, argv in runs.items():
        proc = subprocess.run([sys.executable, "-m", "calip3d", *argv], capture_output=True, text=True, cwd=REPO)
        (out / f"{name}.stdout").write_text(proc.stdout + f"rc={proc.returncode}\n")
        (out / f"{name}.stderr").write_text(proc.stderr)
        print(f"{name}: rc={proc.returncode}", flush=True)
        failed += proc.returncode != 0
    return 1 if failed else 0


def _text(text: str, folder: Path) -> str:
    """`text` with the run folder as <RUN>."""
    return text.replace(str(folder), "<RUN>")


def _plain(value: Any, folder: Path) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v, folder) for k, v in value.items() if k not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_plain(v, folder) for v in value]
    return _text(value, folder) if isinstance(value, str) else value


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'the second' if key not in a else 'the first'}")
            else:
                out += _differences(a[key], b[key], f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in _differences(u, v, f"{path}[{i}]")]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)  # NaN equals NaN here
    return [] if same else [f"{path}: {str(a)[:100]} != {str(b)[:100]}"]


def _tensor_digests(folder: Path) -> dict[str, set[str]]:
    """Name -> digests (with shapes) of every tensor in the cache entries under `folder`."""
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.pt")):
        blob = torch.load(path, weights_only=True)
        for name, tensor in (blob.get("tensors", {}) if isinstance(blob, dict) else {}).items():
            raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
            out.setdefault(name, set()).add(f"{hashlib.sha256(raw).hexdigest()[:16]}{tuple(tensor.shape)}")
    return out


def compare(first: Path, second: Path) -> int:
    problems = []
    for result in sorted(first.glob("*.json")):
        other = second / result.name
        if not other.exists():
            problems.append(f"{result.name}: missing in {second}")
            continue
        a, b = (_plain(json.loads(p.read_text()), p.parent) for p in (result, other))
        problems += [f"{result.name} {d}" for d in _differences(a, b)]
    for stdout in sorted(first.glob("*.stdout")):
        other = second / stdout.name
        if not other.exists() or _text(stdout.read_text(), first) != _text(other.read_text(), second):
            problems.append(f"{stdout.name}: stdout differs")
    for sub in ("cache", "tok"):
        a, b = _tensor_digests(first / sub), _tensor_digests(second / sub)
        problems += [f"{sub}/{name}: cached tensors differ"
                     for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    print("\n".join(problems) if problems else "ALL EQUAL: JSON numbers, stdout and cached tensors")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    run_parser = sub.add_parser("run", help="run every command into a folder")
    run_parser.add_argument("out", type=Path)
    run_parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                            help="the real data (default: ../shared/data)")
    run_parser.add_argument("--models", type=Path, default=None, help="reuse the models of an earlier run's models/")
    run_parser.add_argument("--only", default=None, metavar="NAME,...",
                            help="run only these runs again, into the earlier run OUT (its models and files kept)")
    compare_parser = sub.add_parser("compare", help="compare two run folders")
    compare_parser.add_argument("first", type=Path)
    compare_parser.add_argument("second", type=Path)
    args = parser.parse_args()
    if args.action == "run":
        only = [name for name in args.only.split(",") if name] if args.only else None
        return run(args.out.resolve(), args.data.resolve(), args.models.resolve() if args.models else None, only)
    return compare(args.first.resolve(), args.second.resolve())


if __name__ == "__main__":
    sys.exit(main())
