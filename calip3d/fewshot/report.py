"""The table `calip3d fewshot` prints: accuracies, then every choice with the data it was made on."""

from __future__ import annotations

from typing import Any

COMPARABLE = {
    "honest": "every choice on the val shots: compare with other honest runs, not with published tables that chose "
              "on test",
    "release": "the released code's choices: compare with the baselines' published numbers",
}


def fewshot_table(result: dict[str, Any]) -> str:
    """Rows of top-1 / top-5 (the method, the zero-shot references, the release's own reported number), the
    choices made (labelled ORACLE where they read test labels) and what the numbers compare with."""
    zs = result["zero_shot_reference"]
    val = result["val_top1"]
    rows = [(result["method"], result["test"], f"val shots {'-' if val is None else f'{val:.2f}'}"),
            ("zero-shot CLIP", zs["clip"], ""),
            ("zero-shot CALIP", zs["calip"], "betas " + ",".join(f"{b:g}" for b in zs["calip"]["betas"]))]
    lines = [f"{result['dataset']} / test: {result['num_samples']} samples, {result['num_classes']} classes, "
             f"{result['shots']} shots, seed {result['seed']}, protocol {result['protocol']}"
             f"{' (ORACLE)' if result['oracle'] else ''}",
             f"{'method':<18} {'top-1':>6} {'top-5':>6}  notes", "-" * 84]
    lines += [f"{name:<18} {acc['top1']:>6.2f} {acc['top5']:>6.2f}  {note}" for name, acc, note in rows]
    reported = result.get("release_reported")
    if reported:
        lines.append(f"{'release-reported':<18} {reported['top1']:>6.2f} {'':>6}  {reported['rule']}")
    lines.append("chosen:")
    lines += [f"  {s['label']}" for s in result["selections"]]
    if not any(s["what"] == "betas" for s in result["selections"]):
        lines.append(f"  zero-shot CALIP {zs['calip']['betas_selection']['label']}")
    lines.append(f"compare: {COMPARABLE[result['protocol']]}")
    return "\n".join(lines)
