"""Tests that need ../shared/data skip with the reason when it is absent, and fail instead under
CALIP3D_REQUIRE_DATA=1 (set by .ci/run), so CI cannot pass by skipping them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE = "tests/test_fewshot_cli.py::test_limit_spreads_over_the_class_sorted_test_split"  # uses `caltech_root`


@pytest.mark.parametrize("require, code, word", [("1", 1, "CALIP3D_REQUIRE_DATA=1"), ("", 0, "skipped")])
def test_missing_data_fails_when_required_and_skips_otherwise(require, code, word, tmp_path):
    env = {**os.environ, "CALIP3D_SHARED_DATA": str(tmp_path / "absent"), "CALIP3D_REQUIRE_DATA": require}
    proc = subprocess.run([sys.executable, "-m", "pytest", NODE, "-q", "-rs", "-p", "no:cacheprovider"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert word in proc.stdout and "real test data not found" in proc.stdout


def test_ci_requires_the_data():
    assert "export CALIP3D_REQUIRE_DATA=1" in (REPO / ".ci" / "run").read_text()
