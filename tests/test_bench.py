"""``blocksim bench --quick --json``: runs, prints the table, writes the expected keys (no speed asserts)."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RATIO_KEYS = [
    "table_n04_ratio", "table_n08_ratio",
    "pairsums_n06_n2_ratio", "pairsums_n06_n4_ratio",
    "pt_ref_n04_n2_ratio",
    "pt_sector_n02_n3_ratio",
    "exact_n02_n2_overhead", "exact_n02_n2_lapack_share",
    "scaling_n2_exponent", "scaling_n4_exponent",
    "rg_batch_speedup",
]


def test_bench_quick_json(tmp_path):
    out = tmp_path / "out.json"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "blocksim.cli", "bench", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60, elapsed  # the quick subset is meant for tests (not a speed benchmark)
    table = proc.stdout
    assert "blocksim bench (quick)" in table
    for label in ("pair-coupling table N0=8", "pair sums N0=6 n=2", "sector ED / perturbative",
                  "total / eigh+eigsh", "cost exponent in N, n=4", "largest N0 solved in 60 s, n=2",
                  "quickstart RG run", "sweep speedup", "per-super-block / batched"):
        assert label in table, label
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "results", "rows"}
    assert report["meta"]["quick"] is True and report["meta"]["numba_threads"] >= 1
    res = report["results"]
    for key in RATIO_KEYS:
        assert isinstance(res[key], float) and math.isfinite(res[key]) and res[key] > 0, key
    for n in (2, 4):
        assert isinstance(res[f"n0max60_n{n}_predicted"], int) and res[f"n0max60_n{n}_predicted"] >= 2
    assert len(report["rows"]) == len(table.strip().splitlines()) - 3


def test_bench_is_importable_from_the_package():
    from blocksim import bench

    suite = bench.load_suite()
    assert callable(suite.run_suite) and suite.REPO_ROOT == ROOT
