"""The library speaks in config fields, the commands in flags: a config built with a bad value names `Class.field`
(never a flag), no library message names a flag, and the commands translate the fields back into their flags
(`calip3d.cli.flags.FIELD_FLAGS`)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from calip3d.attention import CalipConfig
from calip3d.backbone import BackboneConfig
from calip3d.cli.flags import FIELD_FLAGS, flag_message, speaks_flags
from calip3d.datasets import PointSettings
from calip3d.encoding import EncodeConfig
from calip3d.errors import CalipError
from calip3d.fewshot.config import FewShotConfig
from calip3d.fewshot.training import TrainConfig
from calip3d.zeroshot import ClassifyConfig, EvalConfig, SearchConfig, TuneConfig, TuneViewsConfig

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "calip3d"
FLAG = re.compile(r"--[A-Za-z]")

# (config class, required arguments, the bad setting, the field its message must name)
BAD_VALUES: list[tuple[type, dict[str, Any], dict[str, Any], str]] = [
    (TuneConfig, {}, {"on": "train"}, "TuneConfig.on"),
    (TuneConfig, {}, {"shots": 0}, "TuneConfig.shots"),
    (TuneConfig, {}, {"limit": 0}, "TuneConfig.limit"),
    (SearchConfig, {}, {"steps": 0}, "SearchConfig.steps"),
    (SearchConfig, {}, {"restarts": -1}, "SearchConfig.restarts"),
    (SearchConfig, {}, {"rounds": 0}, "SearchConfig.rounds"),
    (SearchConfig, {}, {"view_grid": (0.5, 0.0)}, "SearchConfig.view_grid"),
    (SearchConfig, {}, {"view_grid": ()}, "SearchConfig.view_grid"),
    (SearchConfig, {}, {"view_method": "random"}, "SearchConfig.view_method"),
    (EvalConfig, {"dataset": "caltech101"}, {"limit": 0}, "EvalConfig.limit"),
    (EvalConfig, {"dataset": "caltech101"}, {"stream_seeds": ()}, "EvalConfig.stream_seeds"),
    (EvalConfig, {"dataset": "caltech101"}, {"calip": CalipConfig(betas="val")}, "CalipConfig.betas"),
    (TuneViewsConfig, {"dataset": "modelnet40"}, {"calip": CalipConfig(betas="val")}, "CalipConfig.betas"),
    (ClassifyConfig, {"labels": ("a", "b")}, {"calip": CalipConfig(betas="paper")}, "CalipConfig.betas"),
    (CalipConfig, {}, {"betas": (1.0, 2.0)}, "CalipConfig.betas"),
    (CalipConfig, {}, {"betas": (1.0, 2.0, float("nan"))}, "CalipConfig.betas"),
    (CalipConfig, {}, {"betas": "tuned"}, "CalipConfig.betas"),
    (CalipConfig, {}, {"temperature": 0.0}, "CalipConfig.temperature"),
    (TuneViewsConfig, {"dataset": "modelnet40"}, {"limit": 0}, "TuneViewsConfig.limit"),
    (TuneViewsConfig, {"dataset": "modelnet40"}, {"shots": 0}, "TuneViewsConfig.shots"),
    (TuneViewsConfig, {"dataset": "modelnet40"}, {"tune_split": "val"}, "TuneViewsConfig.tune_split"),
    (FewShotConfig, {"dataset": "caltech101"}, {"shots": 0}, "FewShotConfig.shots"),
    (FewShotConfig, {"dataset": "caltech101"}, {"limit": 0}, "FewShotConfig.limit"),
    (FewShotConfig, {"dataset": "caltech101"}, {"augment": -1}, "FewShotConfig.augment"),
    (FewShotConfig, {"dataset": "caltech101"}, {"protocol": "x"}, "FewShotConfig.protocol"),
    (FewShotConfig, {"dataset": "caltech101"}, {"short_classes": "drop"}, "FewShotConfig.short_classes"),
    (FewShotConfig, {"dataset": "caltech101"}, {"features": "x"}, "FewShotConfig.features"),
    (FewShotConfig, {"dataset": "caltech101"}, {"base": "x"}, "FewShotConfig.base"),
    (FewShotConfig, {"dataset": "caltech101"}, {"eval_only": True}, "FewShotConfig.eval_only"),
    (PointSettings, {}, {"num_points": 0}, "PointSettings.num_points"),
    (PointSettings, {}, {"num_points": 2.5}, "PointSettings.num_points"),
    (PointSettings, {}, {"sampling": "poisson"}, "PointSettings.sampling"),
    (PointSettings, {}, {"up_axis": "x"}, "PointSettings.up_axis"),
    (TrainConfig, {}, {"batch_size": 0}, "TrainConfig.batch_size"),
    (TrainConfig, {}, {"epochs": 0}, "TrainConfig.epochs"),
    (TrainConfig, {}, {"lr": 0.0}, "TrainConfig.lr"),
    (TrainConfig, {}, {"weight_decay": -1e-4}, "TrainConfig.weight_decay"),
    (TrainConfig, {}, {"label_smoothing": 1.0}, "TrainConfig.label_smoothing"),
    (EncodeConfig, {}, {"batch_size": 0}, "EncodeConfig.batch_size"),
    (EncodeConfig, {}, {"workers": -1}, "EncodeConfig.workers"),
    (ClassifyConfig, {"labels": ("a", "b")}, {"labels": ("a", "a")}, "ClassifyConfig.labels"),
    (ClassifyConfig, {"labels": ("a", "b")}, {"num_points": 0}, "ClassifyConfig.num_points"),
    (ClassifyConfig, {"labels": ("a", "b")}, {"template": "no placeholder"}, "ClassifyConfig.template"),
    (BackboneConfig, {}, {"precision": "fp8"}, "BackboneConfig.precision"),
    (BackboneConfig, {}, {"device": "gpu0"}, "BackboneConfig.device"),
]


@pytest.mark.parametrize("cls, required, bad, field", BAD_VALUES,
                         ids=[f"{c.__name__}-{next(iter(b))}={next(iter(b.values()))!r}" for c, _, b, _ in BAD_VALUES])
def test_a_bad_config_value_names_its_field_not_a_flag(cls, required, bad, field):
    cls(**required)  # the required arguments alone are fine
    with pytest.raises(CalipError) as info:
        cls(**{**required, **bad})
    message = str(info.value)
    assert field in message and not FLAG.search(message), message
    assert FIELD_FLAGS[field] in flag_message(message) and field not in flag_message(message)  # the commands' words


# ------------------------------------------------------------------------------------------------ the mapping

def _config_class(name: str) -> type:
    for module in ("calip3d.attention", "calip3d.zeroshot", "calip3d.fewshot.config", "calip3d.encoding", "calip3d.backbone",
                   "calip3d.datasets", "calip3d.projection", "calip3d.distributed"):
        cls = getattr(importlib.import_module(module), name, None)
        if cls is not None:
            return cls
    raise AssertionError(f"FIELD_FLAGS names {name}, which no library module defines")


def _command_flags() -> set[str]:
    flags: set[str] = set()
    for command in ("eval", "fewshot", "tune_views", "classify", "show", "table", "fetch"):
        parser = importlib.import_module(f"calip3d.cli.{command}").build_parser()
        flags.update(s for action in parser._actions for s in action.option_strings)
    return flags


def test_every_mapped_field_is_a_real_field_and_every_flag_a_real_flag():
    flags = _command_flags()
    for key, flag in FIELD_FLAGS.items():
        class_name, field = key.split(".")
        assert field in {f.name for f in dataclasses.fields(_config_class(class_name))}, key
        assert flag in flags, f"{key} maps to {flag}, which no command takes"


def test_flag_message_names_flags_and_suggested_settings():
    assert flag_message("SearchConfig.steps must be >= 1, got 0") == "--search-steps must be >= 1, got 0"
    assert flag_message("rank 1: TuneConfig.limit must be >= 1") == "rank 1: --tune-limit must be >= 1"
    assert flag_message("use BackboneConfig.device='cpu'.") == "use --device cpu."
    assert flag_message("with BackboneConfig.quick_gelu=True for") == "with --quick-gelu for"
    assert flag_message("give BackboneConfig.pretrained=PATH (.pt)") == "give --pretrained PATH (.pt)"
    assert flag_message("use ProjectorConfig.views=6") == "use --views 6"
    unchanged = ["PointNNConfig.normalize must be", "EvalConfig.points.num_points", "SearchConfig.stepsize",
                 "see README.md", "TDASettings.alpha_neg must be >= 0"]
    assert [flag_message(text) for text in unchanged] == unchanged


def test_speaks_flags_translates_the_error_and_keeps_its_type():
    class Special(CalipError):
        pass

    @speaks_flags
    def main() -> int:
        raise Special("EncodeConfig.workers must be >= 0, got -1")

    with pytest.raises(Special, match="^--workers must be >= 0, got -1$"):
        main()


# ------------------------------------------------------------------------------------------------ the static scan

# Messages outside calip3d/cli/ that still name flags, left to the dataset-records refactor (issue 15), by (file,
# flag). Remove an entry when its message names the field (or parameter) instead; an entry that no longer matches
# fails the scan, so this list only shrinks.
PENDING: set[tuple[str, str]] = set()
# Allowed: a command to run, `calip3d fetch NAME --format h5` or `torchrun --nproc_per_node N`, up to the end of its
# clause. The scan reads only `CalipError(...)` / `check_at_least(...)` messages; the flag names the library records
# as labels are not messages and stay: `Selection(..., "--betas")` and `betas_source="--betas"` (how the betas were
# chosen, in result JSON), `ViewWeights(..., "--view-weights")` (the weights' source), `FewShotConfig.without_effect`'s
# `ignored_flags` and `TipSettings.resolve`'s "--tip-alpha given" (a result's record of what the user set).
COMMAND_HINT = re.compile(r"\b(calip3d [a-z][a-z-]*|torchrun)\b[^;()`\n]*")
CALLS = {"CalipError", "check_at_least"}


def _render(node: ast.AST, env: dict[str, list[ast.AST]], funcs: dict[str, ast.AST], depth: int = 0) -> str:
    """The text a message expression can produce: its literal parts, `{}` for computed ones; a local variable or a
    call of a function of the module adds what it may hold or return (alternatives joined by ` | `)."""
    def again(n: ast.AST) -> str:
        return _render(n, env, funcs, depth + 1)
    if depth > 4:
        return "{}"
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else "{}"
    if isinstance(node, ast.JoinedStr):
        return "".join(again(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return again(node.left) + again(node.right)
    if isinstance(node, ast.IfExp):
        return again(node.body) + " | " + again(node.orelse)
    if isinstance(node, ast.Name) and node.id in env:
        return " | ".join(again(v) for v in env[node.id])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in funcs:
        returns = [n.value for n in ast.walk(funcs[node.func.id]) if isinstance(n, ast.Return) and n.value]
        return " | ".join(again(v) for v in returns)
    return "{}"


def library_messages(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every `CalipError(...)` and `check_at_least(...)` call in the module at `path`."""
    tree = ast.parse(path.read_text())
    defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    funcs = {n.name: n for n in defs}
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for scope in [*reversed(defs), tree]:  # innermost first: a call is read with its own function's variables
        env: dict[str, list[ast.AST]] = {}
        for n in ast.walk(scope):
            if isinstance(n, ast.Assign):
                for target in n.targets:
                    if isinstance(target, ast.Name):
                        env.setdefault(target.id, []).append(n.value)
        for n in ast.walk(scope):
            name = getattr(n.func, "id", getattr(n.func, "attr", None)) if isinstance(n, ast.Call) else None
            if name in CALLS and (n.lineno, n.col_offset) not in found:
                found[(n.lineno, n.col_offset)] = (n.lineno, " ".join(_render(a, env, funcs) for a in n.args))
    return sorted(found.values())


def _library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] != "cli"]


def test_no_library_message_names_a_flag():
    offending, pending_seen = [], set()
    for path in _library_modules():
        rel = path.relative_to(REPO).as_posix()
        for line, text in library_messages(path):
            for flag in sorted(set(re.findall(r"--[A-Za-z][\w-]*", COMMAND_HINT.sub("", text)))):
                if (rel, flag) in PENDING:
                    pending_seen.add((rel, flag))
                else:
                    offending.append(f"{rel}:{line}: {flag} in {text!r}")
    assert not offending, "library messages naming flags (name the config field instead):\n" + "\n".join(offending)
    assert pending_seen == PENDING, f"no longer found, remove from PENDING: {sorted(PENDING - pending_seen)}"


def test_the_scan_reads_messages_built_in_variables_and_helpers(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def _why(x):\n    return f'lower --batch-size to {x}'\n\n"
        "def f(x):\n    text = 'use --views 6'\n    raise CalipError(text)\n\n"
        "def g(x):\n    raise CalipError(_why(x))\n\n"
        "def h(x):\n    check_at_least(x, 1, '--limit')\n\n"
        "def k(x):\n    raise CalipError('get it with: calip3d fetch ' + x + ' --format h5')\n")
    texts = [text for _, text in library_messages(module)]
    assert texts == ["use --views 6", "lower --batch-size to {}", "{} {} --limit",
                     "get it with: calip3d fetch {} --format h5"]
    assert not FLAG.search(COMMAND_HINT.sub("", texts[-1]))


def test_every_field_a_library_message_names_has_its_flag():
    """A field of a mapped config class named in a message must be in FIELD_FLAGS, or the command would print the
    field's name instead of its flag."""
    classes = {key.split(".")[0] for key in FIELD_FLAGS}
    unmapped = []
    for path in _library_modules():
        for line, text in library_messages(path):
            for name in re.findall(r"(?<![\w.])([A-Z]\w*\.[a-z_]\w*)(?![\w.]*\w)", text):
                if name.split(".")[0] in classes and name not in FIELD_FLAGS:
                    unmapped.append(f"{path.relative_to(REPO)}:{line}: {name}")
    assert not unmapped, "add these to calip3d.cli.flags.FIELD_FLAGS:\n" + "\n".join(unmapped)


# ------------------------------------------------------------------------------------------------ the commands

@pytest.mark.parametrize("command, argv, message", [
    ("eval", ["--dataset", "caltech101", "--temperature", "0"], "^--temperature must be > 0, got 0.0$"),
    ("eval", ["--dataset", "caltech101", "--device", "tpu9"], "^unknown --device 'tpu9'; use auto, cpu, cuda or"),
    ("fewshot", ["--dataset", "caltech101", "--eval-only"], "^--eval-only needs --checkpoint PATH, the checkpoint"),
    ("tune_views", ["--dataset", "modelnet40", "--workers", "0", "--temperature", "-1"],
     "^--temperature must be > 0, got -1.0$"),
    ("classify", ["chair.ply", "--labels", "chair", "chair"], "^--labels contains duplicates$"),
])
def test_a_command_names_the_flag_of_a_bad_value(command, argv, message):
    main = importlib.import_module(f"calip3d.cli.{command}").main
    with pytest.raises(CalipError, match=message):
        main(argv)


def test_the_command_line_prints_the_flag():
    proc = subprocess.run([sys.executable, "-m", "calip3d", "tune-views", "--dataset", "modelnet40", "--temperature",
                           "0"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: --temperature must be > 0, got 0.0"
