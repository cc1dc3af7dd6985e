"""`python -m eval.bench`, the performance table, runs and says what it measured and where."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # 14 s: runs the benchmark script
def test_the_benchmark_prints_its_table_with_the_machine_and_writes_it(tmp_path):
    command = [sys.executable, "-m", "eval.bench", "--only", "lm", "--repeats", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["machine"]["cores_available"] >= 1 and results["machine"]["torch"]
    (row,) = results["rows"]
    assert row["group"] == "lm" and row["median_s"] > 0 and row["peak_rss_gib"] > 0 and "tokens/s" in row["what"]
    table = (tmp_path / "bench.md").read_text()
    assert table.startswith("Machine: ") and "| lm | report model |" in table and table in done.stdout
    wrong = subprocess.run([*command[:4], "gpu,lm"], capture_output=True, text=True, cwd=ROOT)
    assert wrong.returncode == 2 and "unknown group(s) gpu" in wrong.stderr
