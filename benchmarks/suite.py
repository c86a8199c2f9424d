"""The benchmark suite behind ``blocksim bench``: ratios measured side by side in one run.

Every figure is a ratio (or a fitted exponent) of two timings taken in the same process, one right
after the other, each the minimum over ``repeat`` runs after a warm-up call, so that a busy shared
machine shifts both sides alike. Absolute seconds are recorded beside the ratios for context only.
Results are a flat dict ``{key: value}`` (JSON-friendly; None where a row is not available) plus a
list of table rows; see :func:`run_suite` and docs/performance.md.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blocksim import spectra
from blocksim.model import coupling
from blocksim.spectra import perturbative
from blocksim.model.tensors import random_rotation

from .baselines import displacement_table_numpy, pair_sums_numpy

__all__ = ["run_suite", "format_table", "random_superblock", "large_lattice", "REPO_ROOT", "TIME_BUDGET_S"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Wall-time budget of the "largest N0 in this many seconds" row.
TIME_BUDGET_S = 60.0


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def random_superblock(n0: int, n: int, g: float = 1e-3, seed: int = 0, cl_over_ct: float = 1.6, table=None):
    """A super block of n0³ generic n-level members (levels uniform in [0.5, 1.5], GOE-like stress)."""
    rng = np.random.default_rng(seed)
    nb = n0**3
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(0.5, 1.5, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    s = 0.5 * (s + np.swapaxes(s, -1, -2))
    return spectra.assemble_superblock(e, s, random_rotation(rng, nb), n0, g, cl_over_ct, table=table)


def best_time(fn, repeat: int = 3, warmup: bool = True) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` calls (after one untimed warm-up call)."""
    if warmup:
        fn()
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def side_by_side(fast, slow, repeat: int = 3):
    """Time two callables in alternating rounds; returns the (t_fast, t_slow) minima.

    Each timed call follows an untimed call of the same function: after a NumPy/BLAS call the
    OpenBLAS threads spin for a while and steal the cores from the next numba parallel region, which
    on a 2-core machine doubles a short kernel's time. The warm-up call absorbs that.
    """
    tf = ts = math.inf
    for _ in range(repeat):
        fast()
        t = time.perf_counter()
        fast()
        tf = min(tf, time.perf_counter() - t)
        slow()
        t = time.perf_counter()
        slow()
        ts = min(ts, time.perf_counter() - t)
    return tf, ts


def _kernel_pair_sums(sb, e_eff, u_eff, t0, thr):
    nb, nl = sb.n_blocks, sb.n_levels
    h = np.empty((nb, 6))
    perturbative._local_field_kernel(sb.positions, sb.table, sb.n0, t0, h)
    h *= sb.coupling_g
    delta = np.empty((nb, nl, 6))
    nres = np.empty(nb, dtype=np.int64)
    perturbative._pair_kernel(sb.positions, sb.table, sb.n0, sb.coupling_g, e_eff, u_eff, thr, delta, nres)
    return h, delta, nres


# ----------------------------------------------------------------------------------------------
# individual benchmarks
# ----------------------------------------------------------------------------------------------
def bench_table(n0s, repeat):
    """displacement_table (numba, parallel) against the whole-array NumPy baseline."""
    out = {}
    for n0 in n0s:
        tf, ts = side_by_side(lambda: coupling.displacement_table(n0, 1.6),
                              lambda: displacement_table_numpy(n0, 1.6), repeat)
        out[f"table_n0{n0}_numba_s"] = tf
        out[f"table_n0{n0}_numpy_s"] = ts
        out[f"table_n0{n0}_ratio"] = ts / tf
    return out


def bench_pair_sums(cases, repeat, thr=0.1):
    """First-order pair sums: numba kernels against the chunked NumPy baseline (same inputs)."""
    out = {}
    for n0, n in cases:
        sb = random_superblock(n0, n)
        u, t0 = perturbative._member_arrays(sb)
        e = np.ascontiguousarray(sb.energies)
        tf, ts = side_by_side(lambda: _kernel_pair_sums(sb, e, u, t0, thr),
                              lambda: pair_sums_numpy(sb.positions, sb.table, sb.n0, sb.coupling_g, e, u, t0, thr),
                              repeat)
        out[f"pairsums_n0{n0}_n{n}_kernel_s"] = tf
        out[f"pairsums_n0{n0}_n{n}_numpy_s"] = ts
        out[f"pairsums_n0{n0}_n{n}_ratio"] = ts / tf
    return out


def bench_perturbative_vs_reference(cases, repeat, thr=0.1):
    """perturbative_amplitudes with kernels against use_kernels=False (the library's NumPy reference)."""
    out = {}
    for n0, n in cases:
        sb = random_superblock(n0, n)
        tf, ts = side_by_side(lambda: perturbative.perturbative_amplitudes(sb, thr, use_kernels=True),
                              lambda: perturbative.perturbative_amplitudes(sb, thr, use_kernels=False), repeat)
        out[f"pt_ref_n0{n0}_n{n}_kernel_s"] = tf
        out[f"pt_ref_n0{n0}_n{n}_reference_s"] = ts
        out[f"pt_ref_n0{n0}_n{n}_ratio"] = ts / tf
    return out


def bench_perturbative_vs_sector(n0, n, repeat):
    """Full perturbative solve against truncated-sector ED (solve(sb, "sector")) on one super block."""
    sb = random_superblock(n0, n)
    tf, ts = side_by_side(lambda: spectra.solve(sb, "perturbative"), lambda: spectra.solve(sb, "sector"), repeat)
    return {f"pt_sector_n0{n0}_n{n}_pt_s": tf, f"pt_sector_n0{n0}_n{n}_sector_s": ts,
            f"pt_sector_n0{n0}_n{n}_ratio": ts / tf}


def bench_rg_batch(n_superblocks, repeat):
    """The super blocks of an RG step: per-super-block path / batched solver (:mod:`blocksim.spectra.batch`).

    Step 0 of ``runs/quickstart.toml`` (N0 = 2, n = 3, g = 0.02: most super blocks have dressed members,
    resonant clusters or single–double resonances), its first ``n_superblocks`` super blocks with their
    members and rotations: ``solve_batch_reference`` (assemble + solve + truncate + transitions, one super
    block at a time) against ``solve_batch`` on the same arrays, side by side, both with one BLAS thread as
    in an RG step.
    """
    from blocksim.config import load_config
    from blocksim.rg import pool as rg_pool
    from blocksim.spectra import batch

    cfg = load_config(REPO_ROOT / "runs" / "quickstart.toml")
    pool_e, pool_t = rg_pool.initial_pool(cfg)
    members = rg_pool.step_members(cfg, 0, len(pool_e))[:n_superblocks]
    rot = np.array([rg_pool.step_rotations(cfg, 0, j) for j in range(len(members))])
    n0 = cfg.lattice.n0
    table = coupling.displacement_table(n0, cfg.model.cl_over_ct, cfg.model.form)
    args = (pool_e[members], pool_t[members], rot, n0, rg_pool.coupling_at_step(cfg, 0), cfg.model.cl_over_ct,
            cfg.model.form, table)
    kw = dict(resonance_threshold=cfg.solver.resonance_threshold, n_keep=cfg.rg.n_keep,
              temperatures=cfg.observables.temperatures)
    from blocksim._threads import single_blas

    fast = batch.solve_batch(*args, **kw)
    with single_blas():  # as inside an RG step (blocksim.rg.loop, blocksim.rg.tree): one BLAS thread, both paths
        tf, ts = side_by_side(lambda: batch.solve_batch(*args, **kw),
                              lambda: batch.solve_batch_reference(*args, **kw), repeat)
    return {"rg_batch_speedup": ts / tf, "rg_batch_s": tf, "rg_batch_reference_s": ts,
            "rg_batch_superblocks": len(members), "rg_batch_fallback_fraction": fast.fallback_fraction,
            "rg_batch_n0": n0, "rg_batch_n": int(pool_e.shape[1])}


def bench_exact_overhead(cases, repeat):
    """Total time of solve(sb, "exact") against the bare eigh/eigsh calls it makes (timed inside)."""
    import scipy.linalg
    import scipy.sparse.linalg

    out = {}
    for n0, n in cases:
        sb = random_superblock(n0, n, g=0.01)
        inner = [0.0]
        orig_eigh, orig_eigsh = scipy.linalg.eigh, scipy.sparse.linalg.eigsh

        def timed(f):
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    inner[0] += time.perf_counter() - t
            return wrapper

        best_total, best_inner = math.inf, math.inf
        scipy.linalg.eigh, scipy.sparse.linalg.eigsh = timed(orig_eigh), timed(orig_eigsh)
        try:
            spectra.solve(sb, "exact")
            for _ in range(repeat):
                inner[0] = 0.0
                t = time.perf_counter()
                spectra.solve(sb, "exact")
                total = time.perf_counter() - t
                if total < best_total:
                    best_total, best_inner = total, inner[0]
        finally:
            scipy.linalg.eigh, scipy.sparse.linalg.eigsh = orig_eigh, orig_eigsh
        dim = n ** (n0**3)
        key = f"exact_n0{n0}_n{n}"
        out[f"{key}_dim"] = dim
        out[f"{key}_total_s"] = best_total
        out[f"{key}_lapack_s"] = best_inner
        out[f"{key}_overhead"] = best_total / best_inner
        out[f"{key}_lapack_share"] = best_inner / best_total
    return out


def bench_scaling(n, n0s, repeat):
    """Perturbative solve time against N = n0³; fitted exponent p of t ∝ N^p (last 3 points)."""
    times = []
    table = None
    for n0 in n0s:
        table = coupling.displacement_table(n0, 1.6)
        sb = random_superblock(n0, n, table=table)
        times.append(best_time(lambda: spectra.solve(sb, "perturbative"), repeat=repeat, warmup=(n0 == n0s[0])))
    nn = np.array(n0s, dtype=float) ** 3
    k = min(3, len(n0s))
    p = float(np.polyfit(np.log(nn[-k:]), np.log(times[-k:]), 1)[0])
    out = {f"scaling_n{n}_exponent": p, f"scaling_n{n}_n0": list(n0s), f"scaling_n{n}_seconds": times}
    # largest N0 within the budget: t(N0) = t_last·(N0/N0_last)^(3p)
    n0_last, t_last = n0s[-1], times[-1]
    # below p = 1 the sizes are too small to be in the O(N²) regime; extrapolate with p = 2 then
    p_x = p if p >= 1.0 else 2.0
    out[f"scaling_n{n}_exponent_used"] = p_x
    n0_pred = int(math.floor(n0_last * (TIME_BUDGET_S / t_last) ** (1.0 / (3.0 * p_x))))
    out[f"n0max60_n{n}_predicted"] = n0_pred
    out[f"n0max60_n{n}_predicted_s"] = t_last * (n0_pred / n0_last) ** (3.0 * p_x)
    return out


def large_lattice(n0: int, n: int, n_keep: int = 4, temperature: float = 0.1, timeout: float = 600.0) -> dict:
    """Perturbative solve + transitions(T) + truncate(n_keep) at n0³ members, in a fresh subprocess.

    Returns the wall times of the three parts, their sum, and the subprocess's peak RSS
    (:func:`peak_rss_mib`, MiB). Kernels (serial and parallel twins) are compiled/loaded on small
    super blocks first, so the times exclude compilation.
    """
    code = (
        "import json, resource, time, sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from benchmarks.suite import random_superblock, peak_rss_mib\n"
        "from blocksim import spectra\n"
        # warm-up on 27 members (serial twins) and 512 members (parallel kernels): no compilation below
        f"for w in (3, 8): sp = spectra.solve(random_superblock(w, {n})); sp.transitions([{temperature}]); sp.truncate({n_keep})\n"
        "t0 = time.perf_counter()\n"
        f"sb = random_superblock({n0}, {n})\n"
        "t1 = time.perf_counter()\n"
        "sp = spectra.solve(sb, 'perturbative')\n"
        "t2 = time.perf_counter()\n"
        f"tr = sp.transitions([{temperature}])\n"
        "t3 = time.perf_counter()\n"
        f"blk = sp.truncate({n_keep})\n"
        "t4 = time.perf_counter()\n"
        "print(json.dumps({'assemble_s': t1 - t0, 'solve_s': t2 - t1, 'transitions_s': t3 - t2,"
        " 'truncate_s': t4 - t3, 'total_s': t4 - t1, 'peak_rss_mib': peak_rss_mib(),"
        " 'n_resonant_pairs': sp.diagnostics['n_resonant_pairs']}))\n"
    )
    import json

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"large_lattice({n0}, {n}) failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_quickstart(timeout=600.0):
    """``blocksim run runs/quickstart.toml`` in a subprocess: cold (empty NUMBA_CACHE_DIR), then warm."""
    cfg = REPO_ROOT / "runs" / "quickstart.toml"
    if not cfg.exists() or not (REPO_ROOT / "blocksim" / "rg").is_dir():
        return {"quickstart_cold_s": None, "quickstart_warm_s": None, "quickstart_cold_over_warm": None,
                "quickstart_note": "n/a (not yet available)"}
    out = {}
    with tempfile.TemporaryDirectory(prefix="blocksim-bench-qs-") as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / "numba-cache"))
        for label in ("cold", "warm"):
            cmd = [sys.executable, "-m", "blocksim.cli", "run", str(cfg), "-o", str(Path(tmp) / f"{label}.h5"),
                   "--force", "--no-plot", "-q"]
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO_ROOT))
            dt = time.perf_counter() - t
            if proc.returncode != 0:
                return {"quickstart_cold_s": None, "quickstart_warm_s": None, "quickstart_cold_over_warm": None,
                        "quickstart_note": f"failed: {proc.stderr.strip().splitlines()[-1:]}"}
            out[f"quickstart_{label}_s"] = dt
    out["quickstart_cold_over_warm"] = out["quickstart_cold_s"] / out["quickstart_warm_s"]
    out["quickstart_note"] = ""
    return out


def bench_sweep(n_tasks):
    """Local sweep executor with 1 and 2 workers (:func:`benchmarks.sweep.sweep_throughput`)."""
    from .sweep import sweep_throughput

    r1 = sweep_throughput(workers=1, n_tasks=n_tasks)
    r2 = sweep_throughput(workers=2, n_tasks=n_tasks)
    t1, t2 = r1["local_seconds"], r2["local_seconds"]
    return {"sweep_w1_tasks_per_s": n_tasks / t1, "sweep_w2_tasks_per_s": n_tasks / t2, "sweep_speedup_w2": t1 / t2,
            "sweep_n_tasks": n_tasks, "sweep_note": ""}


# ----------------------------------------------------------------------------------------------
# suite
# ----------------------------------------------------------------------------------------------
def machine_info() -> dict:
    import numba

    from blocksim._version import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=str(REPO_ROOT), timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"blocksim_version": __version__, "git_commit": commit, "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor() or None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_suite(quick: bool = False, verify: bool = True, large: bool = False, log=print) -> dict:
    """Run the suite; returns ``{"meta": ..., "results": {...}, "rows": [(label, value, note), ...]}``.

    quick: small sizes and no subprocess rows (for tests; a few seconds). verify: run the solver once at
    the predicted largest N0 within :data:`TIME_BUDGET_S` (skipped when quick). large: also the
    large-lattice targets (N0 = 32 with n = 2, N0 = 16 with n = 4), each in a subprocess.
    """
    rep = 2 if quick else 3
    res: dict = {}
    steps = [
        ("pair-coupling table", lambda: bench_table((4, 8) if quick else (4, 8, 16), rep)),
        ("pair sums vs NumPy", lambda: bench_pair_sums(((6, 2), (6, 4)) if quick else ((8, 2), (8, 4), (12, 2), (12, 4), (16, 2)), 2 if quick else 2)),
        ("perturbative vs reference", lambda: bench_perturbative_vs_reference(((4, 2),) if quick else ((8, 2), (8, 4)), rep)),
        ("perturbative vs sector", lambda: bench_perturbative_vs_sector(2 if quick else 3, 3, rep)),
        ("exact overhead", lambda: bench_exact_overhead(((2, 2),) if quick else ((2, 2), (2, 3)), rep)),
        ("batched RG step", lambda: bench_rg_batch(128 if quick else 1024, rep)),
        ("scaling n=2", lambda: bench_scaling(2, (6, 8, 10) if quick else (12, 16, 20, 24), 1 if quick else 2)),
        ("scaling n=4", lambda: bench_scaling(4, (6, 8, 10) if quick else (10, 12, 14, 16), 1 if quick else 2)),
    ]
    if not quick:
        steps.append(("quickstart run", bench_quickstart))
        steps.append(("sweep", lambda: bench_sweep(4)))
    for name, fn in steps:
        t = time.perf_counter()
        res.update(fn())
        log(f"[bench] {name}: {time.perf_counter() - t:.1f} s")
    for n in (2, 4):
        res[f"n0max60_n{n}_verified_s"] = None
        res[f"n0max60_n{n}_how"] = "extrapolated from the fitted exponent"
        if verify and not quick:
            n0 = res[f"n0max60_n{n}_predicted"]
            if res[f"n0max60_n{n}_predicted_s"] <= 1.5 * TIME_BUDGET_S:
                t = time.perf_counter()
                r = large_lattice(n0, n)
                t_v = r["solve_s"]
                res[f"n0max60_n{n}_verified_s"] = t_v
                res[f"n0max60_n{n}_how"] = f"extrapolated, verified by one solve at N0 = {n0}"
                if t_v > TIME_BUDGET_S:
                    # the fitted sizes were not yet asymptotic: refit through the last fitted point and
                    # the verified one, and predict again (not verified a second time)
                    n0_l, t_l = res[f"scaling_n{n}_n0"][-1], res[f"scaling_n{n}_seconds"][-1]
                    p2 = math.log(t_v / t_l) / (3.0 * math.log(n0 / n0_l))
                    res[f"n0max60_n{n}_predicted"] = int(math.floor(n0 * (TIME_BUDGET_S / t_v) ** (1.0 / (3.0 * p2))))
                    res[f"n0max60_n{n}_predicted_s"] = t_v * (res[f"n0max60_n{n}_predicted"] / n0) ** (3.0 * p2)
                    res[f"n0max60_n{n}_how"] = (f"solve at predicted N0 = {n0} took {t_v:.0f} s > {TIME_BUDGET_S:.0f} s; "
                                                f"re-extrapolated with p = {p2:.2f} (N0 = {n0_l}..{n0})")
                log(f"[bench] verify N0={n0} n={n}: {time.perf_counter() - t:.1f} s")
    if large:
        for n0, n in ((32, 2), (16, 4)):
            r = large_lattice(n0, n)
            for k, v in r.items():
                res[f"large_n0{n0}_n{n}_{k}"] = v
            log(f"[bench] large N0={n0} n={n}: {r['total_s']:.1f} s, {r['peak_rss_mib']:.0f} MiB")
    meta = machine_info()
    meta["quick"] = quick
    return {"meta": meta, "results": res, "rows": table_rows(res, quick)}


def _f(x, fmt="{:.3g}"):
    return "n/a" if x is None else fmt.format(x)


def table_rows(r: dict, quick: bool):
    """(figure, value, detail) rows of the printed table."""
    rows = []
    for key in sorted((k for k in r if k.startswith("table_n0") and k.endswith("_ratio")),
                      key=lambda k: int(k.split("_")[1][2:])):
        n0 = key.split("_")[1][2:]
        rows.append((f"pair-coupling table N0={n0}: NumPy / numba", f"{r[key]:.1f}x",
                     f"{r[f'table_n0{n0}_numpy_s']:.3g} s vs {r[f'table_n0{n0}_numba_s']:.3g} s"))
    for key in sorted((k for k in r if k.startswith("pairsums_") and k.endswith("_ratio")),
                      key=lambda k: (int(k.split("_")[1][2:]), k)):
        base = key[: -len("_ratio")]
        lab = base[len("pairsums_"):].replace("_", " ").replace("n0", "N0=").replace(" n", " n=")
        rows.append((f"pair sums {lab}: chunked NumPy / kernels", f"{r[key]:.1f}x",
                     f"{r[base + '_numpy_s']:.3g} s vs {r[base + '_kernel_s']:.3g} s"))
    for key in sorted(k for k in r if k.startswith("pt_ref_") and k.endswith("_ratio")):
        base = key[: -len("_ratio")]
        lab = base[len("pt_ref_"):].replace("_", " ").replace("n0", "N0=").replace(" n", " n=")
        rows.append((f"perturbative_amplitudes {lab}: reference / kernels", f"{r[key]:.1f}x",
                     f"{r[base + '_reference_s']:.3g} s vs {r[base + '_kernel_s']:.3g} s"))
    for key in sorted(k for k in r if k.startswith("pt_sector_") and k.endswith("_ratio")):
        base = key[: -len("_ratio")]
        lab = base[len("pt_sector_"):].replace("_", " ").replace("n0", "N0=").replace(" n", " n=")
        rows.append((f"solve {lab}: sector ED / perturbative", f"{r[key]:.1f}x",
                     f"{r[base + '_sector_s']:.3g} s vs {r[base + '_pt_s']:.3g} s"))
    for key in sorted(k for k in r if k.startswith("exact_") and k.endswith("_overhead")):
        base = key[: -len("_overhead")]
        lab = base[len("exact_"):].replace("_", " ").replace("n0", "N0=").replace(" n", " n=")
        rows.append((f"exact solver {lab} (dim {r[base + '_dim']}): total / eigh+eigsh", f"{r[key]:.2f}x",
                     f"LAPACK/ARPACK share {100 * r[base + '_lapack_share']:.0f}%"))
    if "rg_batch_speedup" in r:
        rows.append((f"RG step N0={r['rg_batch_n0']} n={r['rg_batch_n']}: per-super-block / batched",
                     f"{r['rg_batch_speedup']:.1f}x",
                     f"{r['rg_batch_reference_s']:.3g} s vs {r['rg_batch_s']:.3g} s for {r['rg_batch_superblocks']} "
                     f"super blocks (quickstart step 0), fallback {100 * r['rg_batch_fallback_fraction']:.1f}%"))
    for n in (2, 4):
        if f"scaling_n{n}_exponent" in r:
            pts = ", ".join(f"{a}:{b:.3g}s" for a, b in zip(r[f"scaling_n{n}_n0"], r[f"scaling_n{n}_seconds"]))
            rows.append((f"perturbative solve cost exponent in N, n={n}", f"{r[f'scaling_n{n}_exponent']:.2f}",
                         f"N0:t = {pts}"))
    for n in (2, 4):
        if f"n0max60_n{n}_predicted" in r:
            ver = r.get(f"n0max60_n{n}_verified_s")
            detail = r[f"n0max60_n{n}_how"] + (f" ({ver:.1f} s)" if ver is not None and ver <= TIME_BUDGET_S else
                                                f" (predicted {r[f'n0max60_n{n}_predicted_s']:.0f} s)")
            if r[f"scaling_n{n}_exponent_used"] != r[f"scaling_n{n}_exponent"]:
                detail += "; fitted exponent < 1 (sizes too small), N² assumed"
            rows.append((f"largest N0 solved in {TIME_BUDGET_S:.0f} s, n={n}", str(r[f"n0max60_n{n}_predicted"]), detail))
    if quick:
        rows.append(("quickstart RG run cold / warm", "skipped (--quick)", ""))
        rows.append(("sweep speedup 2 workers / 1", "skipped (--quick)", ""))
    else:
        if r.get("quickstart_cold_s") is None:
            rows.append(("quickstart RG run cold / warm", r.get("quickstart_note") or "n/a (not yet available)", ""))
        else:
            rows.append(("quickstart RG run cold / warm", f"{r['quickstart_cold_over_warm']:.2f}x",
                         f"cold {r['quickstart_cold_s']:.1f} s, warm {r['quickstart_warm_s']:.1f} s"))
        if r.get("sweep_speedup_w2") is None:
            rows.append(("sweep speedup 2 workers / 1", r.get("sweep_note") or "n/a (not yet available)", ""))
        else:
            rows.append(("sweep speedup 2 workers / 1", f"{r['sweep_speedup_w2']:.2f}x",
                         f"{r['sweep_w1_tasks_per_s']:.2f} vs {r['sweep_w2_tasks_per_s']:.2f} tasks/s "
                         f"({r['sweep_n_tasks']} tasks)"))
    for n0, n in ((32, 2), (16, 4)):
        k = f"large_n0{n0}_n{n}_"
        if k + "total_s" in r:
            rows.append((f"large lattice N0={n0} n={n}: solve+transitions+truncate", f"{r[k + 'total_s']:.1f} s",
                         f"solve {r[k + 'solve_s']:.1f} s, peak RSS {r[k + 'peak_rss_mib']:.0f} MiB"))
    return rows


def format_table(report: dict) -> str:
    """The rows as a fixed-width text table with a header naming the machine."""
    meta = report["meta"]
    rows = report["rows"]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    head = (f"blocksim bench ({'quick' if meta['quick'] else 'full'}) — blocksim {meta['blocksim_version']} "
            f"@ {meta['git_commit']}, {meta['cpu_count']} CPUs, numba threads {meta['numba_threads']}; "
            "ratios measured side by side, min of repeats")
    lines = [head, f"{'figure':<{w0}}  {'value':>{w1}}  detail", "-" * (w0 + w1 + 40)]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB: VmHWM of /proc/self/status (reset by exec, unlike
    ``getrusage().ru_maxrss``, which Linux carries over from the parent across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
