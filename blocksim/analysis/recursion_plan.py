"""Tasks, local pool, SLURM array and merge for the N0 scan of :mod:`.recursion_check`.

A plan (TOML, ``runs/scans/recursion_check*.toml``) fixes the scan::

    [scan]
    n0 = [2, 3, 4, 6, 8, 12, 16, 24, 32]
    shapes = ["cube", "sphere"]
    couplings = [3e-4, 1e-3, 3e-3]
    thresholds = [0.05, 0.1, 0.2]
    samples = {2 = 64, 16 = 12, 32 = 6}   # per N0 (missing N0: the "default" key, or 16)
    samples_per_task = {16 = 2, 32 = 1}   # samples per task (default 8), so that a task fits ≤ 10 min
    couplings_per_task = {32 = 1}         # couplings per task (default: all); the large lattices split by g
    seed = 12345
    output_dir = "out/recursion_check"   # relative to the plan file

Task i is one (shape, N0, range of sample indices, range of coupling indices); sample k of (shape, N0) uses the stream
``SeedSequence(seed, spawn_key=(shape index, N0, k))``, so results do not depend on how samples are
grouped into tasks or which worker runs them (the blocks and rotations are drawn before any solve, so
a task holding a subset of the couplings sees the same super block). Each task writes
``tasks/<shape>_n<N0>_<first>.npz`` (``..._g<i>.npz`` when the couplings are split); the merge joins
the coupling parts of each sample and uses the samples that are complete (missing tasks are listed,
not guessed).

Commands (the thin script ``analysis/recursion_check.py``):

* ``--plan P --workers K`` runs every missing task on a local process pool, then merges;
* ``--plan P --task I`` runs task I (the SLURM array body, ``runs/slurm/recursion_check.sbatch``);
* ``--plan P --merge`` merges and writes the CSVs and the figure;
* ``--plan P --list`` prints the tasks.
"""

from __future__ import annotations

import os
import sys
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..model.coupling import displacement_table
from ..theory import semianalytic as semi
from . import Report
from . import recursion_check as rc
from .loading import format_table, new_figure, save_figure, write_table

__all__ = ["Plan", "load_plan", "tasks", "run_order", "run_task", "run_local", "merge", "main"]

_KNOWN = {"n0", "shapes", "couplings", "thresholds", "samples", "samples_per_task", "couplings_per_task", "seed",
          "output_dir",
          "block", "cl_over_ct", "temperature", "omegas", "width", "moment_samples"}


@dataclass(frozen=True)
class Plan:
    """A resolved scan plan (see the module docstring); ``output_dir`` is absolute."""

    n0: tuple
    shapes: tuple
    couplings: tuple
    thresholds: tuple
    samples: dict
    samples_per_task: dict
    seed: int
    output_dir: str
    block: dict = field(default_factory=lambda: {"kind": "generic", "n": 3})
    cl_over_ct: float = 1.6
    temperature: float = 0.01
    omegas: tuple = (0.3, 0.45, 0.6)
    width: float = 0.08
    moment_samples: int = 40000
    couplings_per_task: dict = field(default_factory=dict)


def _per_n0(table, n0, default):
    if isinstance(table, int):
        return table
    table = dict(table or {})
    return int(table.get(str(n0), table.get("default", default)))


def load_plan(path, overrides: dict | None = None) -> Plan:
    """Read a plan TOML (``[scan]`` table); ``overrides`` replace keys (e.g. from the command line).

    Parameters
    ----------
    path : str
        Plan file.
    overrides : dict, optional
        Keys of ``[scan]`` to replace.

    Returns
    -------
    Plan
    """
    if not os.path.exists(path):
        raise InputError(f"plan = {path!r}: no such file")
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    scan = dict(data.get("scan", {}))
    scan.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for key in scan:
        if key not in _KNOWN:
            raise InputError(f"scan.{key}: unknown key (valid: {', '.join(sorted(_KNOWN))})")
    for key in ("n0", "couplings", "thresholds"):
        if key not in scan:
            raise InputError(f"scan.{key}: missing")
    if any(float(g) <= 0 for g in scan["couplings"]):
        raise InputError(f"scan.couplings = {scan['couplings']}: every g must be > 0")
    if any(not 0 < float(t) < 1 for t in scan["thresholds"]):
        raise InputError(f"scan.thresholds = {scan['thresholds']}: every θ must be in (0, 1)")
    shapes = tuple(scan.get("shapes", rc.SHAPES))
    for s in shapes:
        rc.site_positions(s, 2)
    out = scan.get("output_dir", "out/recursion_check")
    out = os.path.normpath(out if os.path.isabs(out) else os.path.join(os.path.dirname(os.path.abspath(path)), out))
    samples = {int(n): _per_n0(scan.get("samples", 16), n, 16) for n in scan["n0"]}
    if min(samples.values()) < 2:
        raise InputError(f"scan.samples = {scan.get('samples')}: need ≥ 2 per N0")
    return Plan(
        n0=tuple(int(n) for n in scan["n0"]), shapes=shapes, couplings=tuple(float(g) for g in scan["couplings"]),
        thresholds=tuple(float(t) for t in scan["thresholds"]), samples=samples,
        samples_per_task={int(n): max(1, _per_n0(scan.get("samples_per_task", 8), n, 8)) for n in scan["n0"]},
        seed=int(scan.get("seed", 12345)), output_dir=out, block=dict(scan.get("block", {"kind": "generic", "n": 3})),
        cl_over_ct=float(scan.get("cl_over_ct", 1.6)), temperature=float(scan.get("temperature", 0.01)),
        omegas=tuple(float(w) for w in scan.get("omegas", (0.3, 0.45, 0.6))), width=float(scan.get("width", 0.08)),
        moment_samples=int(scan.get("moment_samples", 40000)),
        couplings_per_task={int(n): max(1, _per_n0(scan.get("couplings_per_task", {}), n, len(scan["couplings"])))
                            for n in scan["n0"]},
    )


def tasks(plan: Plan) -> list:
    """The task list: ``(shape, n0, first_sample, last_sample, first_coupling, last_coupling)`` (ends
    exclusive, coupling indices into ``plan.couplings``), small N0 first."""
    out = []
    ng = len(plan.couplings)
    for n0 in plan.n0:
        for shape in plan.shapes:
            total, per = plan.samples[n0], plan.samples_per_task[n0]
            gper = min(plan.couplings_per_task.get(n0, ng), ng)
            for first in range(0, total, per):
                for g0 in range(0, ng, gper):
                    out.append((shape, n0, first, min(first + per, total), g0, min(g0 + gper, ng)))
    return out


def _task_path(plan: Plan, task) -> str:
    shape, n0, first, _, g0, g1 = task
    suffix = "" if (g0, g1) == (0, len(plan.couplings)) else f"_g{g0}"
    return os.path.join(plan.output_dir, "tasks", f"{shape}_n{n0}_{first:04d}{suffix}.npz")


def run_task(plan: Plan, index: int) -> str:
    """Run task ``index`` and write its ``.npz`` (atomic rename); returns the path.

    Parameters
    ----------
    plan : Plan
        The scan.
    index : int
        Task index (:func:`tasks`).

    Returns
    -------
    str
    """
    todo = tasks(plan)
    if not 0 <= index < len(todo):
        raise InputError(f"task = {index}: must be in [0, {len(todo) - 1}]")
    shape, n0, first, last, g0, g1 = todo[index]
    couplings = plan.couplings[g0:g1]
    table = displacement_table(n0, plan.cl_over_ct)
    recs = []
    for k in range(first, last):
        rng = np.random.default_rng(np.random.SeedSequence(plan.seed, spawn_key=(rc.SHAPES.index(shape), n0, k)))
        recs.append(rc.sample_record(rng, shape, n0, couplings, plan.thresholds, block_spec=plan.block,
                                     cl_over_ct=plan.cl_over_ct, temperature=plan.temperature, omegas=plan.omegas,
                                     width=plan.width, table=table))
    path = _task_path(plan, todo[index])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, base=np.stack([r["base"] for r in recs]), re0=np.stack([r["re0"] for r in recs]),
             **{key: np.stack([r[key] for r in recs]) for key in rc.PARTS},
             diag=np.stack([r["diag"] for r in recs]), members=recs[0]["members"],
             samples=np.arange(first, last), couplings=np.array(couplings), coupling_index=np.arange(g0, g1),
             thresholds=np.array(plan.thresholds))
    os.replace(tmp, path)
    return path


def _worker(args):
    plan, index = args
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    return run_task(plan, index)


def run_order(plan: Plan) -> list:
    """Task indices in round-robin order: the k-th task of every (shape, N0) in round k, small N0 first in a round.

    The cheap small-N0 groups have few tasks and finish in the first rounds; the large lattices fill the later
    ones. A run stopped early (a time limit, a killed job) therefore holds complete samples at every N0 and
    shape, with the most samples where they are cheapest, instead of all of N0 = 24 and none of N0 = 32.
    Coupling parts of one sample stay next to each other, so a sample completes before the next starts.
    """
    rank, seen, key = {}, {}, []
    for i, (shape, n0, first, _last, g0, _g1) in enumerate(tasks(plan)):
        group = (n0, plan.shapes.index(shape))
        if (group, first) not in rank:
            rank[(group, first)] = seen.get(group, 0)
            seen[group] = rank[(group, first)] + 1
        key.append((rank[(group, first)], group, g0, i))
    return [k[-1] for k in sorted(key)]


def run_local(plan: Plan, workers: int = 1, log=print) -> list:
    """Run every task whose file is missing, on ``workers`` processes (1: in this process), in :func:`run_order`."""
    every = tasks(plan)
    todo = [i for i in run_order(plan) if not os.path.exists(_task_path(plan, every[i]))]
    log(f"{len(todo)} of {len(tasks(plan))} tasks to run")
    done = []
    if workers <= 1:
        for i in todo:
            done.append(run_task(plan, i))
            log(f"task {i}: {done[-1]}")
        return done
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for path in pool.map(_worker, [(plan, i) for i in todo]):
            done.append(path)
            log(f"done {path}")
    return done


def _load_records(plan: Plan):
    """Per-sample records joined over the coupling parts: ``{(shape, n0): [record, ...]}`` and the missing files."""
    parts, missing = {}, []
    ng = len(plan.couplings)
    for t in tasks(plan):
        path = _task_path(plan, t)
        if not os.path.exists(path):
            missing.append(os.path.basename(path))
            continue
        g0, g1 = t[4], t[5]
        with np.load(path) as z:
            if tuple(z["couplings"]) != plan.couplings[g0:g1] or tuple(z["thresholds"]) != plan.thresholds:
                raise InputError(f"{path}: computed on another (g, θ) grid than the plan")
            for i, k in enumerate(z["samples"]):
                rec = parts.get((t[0], t[1], int(k)))
                if rec is None:
                    nt, nc = z["d_res"].shape[2], z["d_res"].shape[3]
                    rec = {"base": z["base"][i], "re0": z["re0"][i], "members": int(z["members"]),
                           **{key: np.full((ng, nt, nc), np.nan) for key in rc.PARTS},
                           "diag": np.full((ng, nt, z["diag"].shape[3]), np.nan), "filled": np.zeros(ng, dtype=bool)}
                    parts[(t[0], t[1], int(k))] = rec
                rec["diag"][g0:g1] = z["diag"][i]
                for key in rc.PARTS:  # task files written before the cluster split lack the last two (NaN)
                    if key in z:
                        rec[key][g0:g1] = z[key][i]
                rec["filled"][g0:g1] = True
    by_key = {}
    for (shape, n0, _k), rec in sorted(parts.items()):
        if rec["filled"].all():
            by_key.setdefault((shape, n0), []).append(rec)
    return by_key, missing


def merge(plan: Plan, outdir: str | None = None, *, pair_draws: int = 64) -> Report:
    """Merge the task files into ``recursion_check.csv`` (+ ``_fits``, ``_semianalytic_limit``) and the figure.

    Parameters
    ----------
    plan : Plan
        The scan.
    outdir : str, optional
        Output folder (default: the plan's output_dir).
    pair_draws : int
        Draws per displacement of the resonant-pair estimate.

    Returns
    -------
    Report
    """
    outdir = outdir or plan.output_dir
    by_key, missing = _load_records(plan)
    if not by_key:
        raise InputError(f"no task files under {plan.output_dir}/tasks: run the tasks first")
    rows = []
    for (shape, n0), recs in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if len(recs) >= 2:
            rows += rc.reduce_samples(recs, shape, n0, plan.couplings, plan.thresholds, plan.cl_over_ct)
    semi_vals, limit_rows = rc.semianalytic_rows(plan.shapes, sorted({r["n0"] for r in rows}), block_spec=plan.block,
                                                 cl_over_ct=plan.cl_over_ct, omegas=plan.omegas, width=plan.width,
                                                 moment_samples=plan.moment_samples, seed=plan.seed + 1)
    mom = semi.single_block_moments(plan.block, np.random.default_rng(plan.seed + 2),
                                    samples=min(plan.moment_samples, 20000), omegas=plan.omegas, width=plan.width)
    estimates, excess = {}, {}
    n_levels = int(plan.block.get("n", 2 ** plan.block.get("k", 1)))
    for r in rows:
        c = rc.KEYS.index((r["direction"], r["pol"]))
        r["r_semianalytic"] = float(semi_vals[(r["shape"], r["n0"])][c])
        key = (r["shape"], r["n0"], r["coupling_g"], r["threshold"])
        if r["coupling_g"] > 0 and r["threshold"] > 0 and key not in estimates:
            estimates[key] = semi.resonant_pair_estimate(
                mom, rc.site_positions(r["shape"], r["n0"]), plan.cl_over_ct, r["coupling_g"], r["threshold"],
                np.random.default_rng(plan.seed + 3), n_levels=n_levels, draws=pair_draws)
        r["pairs_estimate"] = estimates.get(key, float("nan"))
        if (r["shape"], r["n0"]) not in excess:
            pos = rc.site_positions(r["shape"], r["n0"])
            x = semi.normalization_excess(mom, pos, plan.cl_over_ct, np.random.default_rng(plan.seed + 4),
                                          n_levels=n_levels, draws=4 * pair_draws)
            _, base = semi.predicted_tensors(mom, np.zeros((6, 6)), pos.shape[0])
            excess[(r["shape"], r["n0"])] = rc.components(x) / rc.components(base)
        r["excess_slope_estimate"] = float(excess[(r["shape"], r["n0"])][c])
    fits = rc.fit_rows(rows)
    os.makedirs(outdir, exist_ok=True)
    csv_path = write_table(rows, os.path.join(outdir, "recursion_check.csv"))
    write_table(fits, os.path.join(outdir, "recursion_check_fits.csv"))
    write_table(limit_rows, os.path.join(outdir, "recursion_check_semianalytic_limit.csv"))
    png_path = plot(rows, fits, os.path.join(outdir, "recursion_check.png"))
    powder = [r for r in rows if r["direction"] == "powder"]
    text = format_table(powder, "Interaction part per unit g, powder (all (g, θ); θ = 0: θ → 0; g = 0: g → 0)")
    if missing:
        text += f"\n\nmissing tasks ({len(missing)}): {', '.join(missing[:12])}{' …' if len(missing) > 12 else ''}"
    return Report("recursion_check", rows, csv_path, png_path, text, {"fits": fits, "missing": missing,
                                                                      "limit": limit_rows})


def plot(rows, fits, path) -> str:
    """r against N0 (log axis), powder l and t per shape: r (θ → 0, g → 0 where present), its parts at the
    middle θ and smallest g, Eq. (3.7), the semi-analytic line and the best-AIC fit of r."""
    shapes = sorted({r["shape"] for r in rows})
    nsh = min(2, len(shapes))
    fig, axes = new_figure(ncols=nsh + 1, nrows=2, size=(5.5, 4.5))
    gs = sorted({r["coupling_g"] for r in rows if r["coupling_g"] > 0})
    ths = sorted({r["threshold"] for r in rows if r["threshold"] > 0})
    g_ref, th_ref = gs[0], ths[len(ths) // 2]
    g_final = 0.0 if any(r["coupling_g"] == 0 for r in rows) else g_ref
    th_final = 0.0 if any(r["threshold"] == 0 for r in rows) else th_ref
    for i, shape in enumerate(shapes[:2]):
        for j, pol in enumerate(("l", "t")):
            ax = axes[j, i]

            def series(g, th, _shape=shape, _pol=pol):
                return sorted([r for r in rows if r["shape"] == _shape and r["pol"] == _pol and r["direction"] == "powder"
                               and r["coupling_g"] == g and r["threshold"] == th], key=lambda r: r["n0"])

            fin = series(g_final, th_final)
            ref = series(g_ref, th_ref)
            if fin:
                x = np.array([r["n0"] for r in fin], dtype=float)
                ax.errorbar(x, [r["r_per_g"] for r in fin], yerr=[r["err"] for r in fin], fmt="ko", capsize=2,
                            label=f"r (g→{g_final:g}, θ→{th_final:g})")
            for k, (col, lab, fmt) in enumerate((("r_per_g", "r", "s"), ("r_resonant", "r_res", "^"),
                                                 ("r_nonresonant", "r_nonres", "v"))):
                if ref:
                    x = np.array([r["n0"] for r in ref], dtype=float) * (1.0 + 0.03 * (k + 1))
                    err = {"r_per_g": "err", "r_resonant": "err_resonant", "r_nonresonant": "err_nonresonant"}[col]
                    ax.errorbar(x, [r[col] for r in ref], yerr=[r[err] for r in ref], fmt=fmt, ms=3, capsize=1,
                                alpha=0.7, label=f"{lab} (g={g_ref:g}, θ={th_ref:g})")
            base = fin or ref
            if base:
                x = np.array([r["n0"] for r in base], dtype=float)
                ax.plot(x, [r["eq37_pred"] for r in base], "k--", lw=1, label="Eq. 3.7: b_pred ln N0")
                ax.plot(x, [r.get("r_semianalytic", np.nan) for r in base], "g-", lw=1.2, label="semi-analytic (1st order)")
                fit = [f for f in fits if f["shape"] == shape and f["pol"] == pol and f["direction"] == "powder"
                       and f["coupling_g"] == base[0]["coupling_g"] and f["threshold"] == base[0]["threshold"]
                       and f["part"] == "r_per_g"]
                if fit:
                    f = fit[0]
                    xx = np.geomspace(x.min(), x.max(), 50)
                    yy = {"const": np.full_like(xx, f["const_a"]), "log": f["log_a"] + f["log_b"] * np.log(xx),
                          "sat": f["sat_a"] - f["sat_c"] / xx, "pow": f["pow_a"] * xx ** f["pow_p"]}[f["best"]]
                    ax.plot(xx, yy, "r:", lw=1.2, label=f"best fit ({f['best']})")
            _log_axis(ax, x if base else [2, 4])
            ax.set_ylabel(f"r_{pol} = δĖ/(g Ė^(1))")
            ax.set_title(f"{shape}, powder {pol}", fontsize=9)
            ax.legend(fontsize=5)
    # third column: the threshold dependence of the non-resonant part (powder l) and its estimate θ·X
    for i, shape in enumerate(shapes[:2]):
        ax = axes[i, nsh]
        for k, th in enumerate(ths):
            ser = sorted([r for r in rows if r["shape"] == shape and r["pol"] == "l" and r["direction"] == "powder"
                          and r["coupling_g"] == g_ref and r["threshold"] == th], key=lambda r: r["n0"])
            if not ser:
                continue
            x = np.array([r["n0"] for r in ser], dtype=float)
            line = ax.errorbar(x * (1.0 + 0.03 * k), [r["r_nonresonant"] for r in ser],
                               yerr=[r["err_nonresonant"] for r in ser], fmt="o", ms=3, capsize=1, label=f"θ = {th:g}")
            if "excess_slope_estimate" in ser[0]:
                ax.plot(x, [th * r["excess_slope_estimate"] for r in ser], "--", lw=1, color=line[0].get_color())
        ax.plot([], [], "k--", lw=1, label="θ·X: unnormalized 1st-order excess")
        _log_axis(ax, x if ths else [2, 4])
        ax.set_ylabel("r_nonresonant, l")
        ax.set_title(f"{shape}: non-resonant part vs θ (g = {g_ref:g})", fontsize=9)
        ax.legend(fontsize=5)
    if nsh == 1:  # one shape: its θ panel above, nothing below
        axes[1, 1].set_visible(False)
    return save_figure(fig, path)


def _log_axis(ax, x):
    from matplotlib.ticker import NullFormatter

    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ticks = sorted({int(v) for v in x})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("N0")


def main(argv=None) -> int:
    """``python analysis/recursion_check.py --plan P [--task I | --workers K | --merge | --list | --ed-check]``."""
    import argparse

    parser = argparse.ArgumentParser(description="N0 scan of the interaction part of the absorption (Eq. 3.7)")
    parser.add_argument("--plan", default=None, help="scan plan TOML (default runs/scans/recursion_check.toml)")
    parser.add_argument("-o", "--outdir", default=None, help="output folder of the merge (default: the plan's)")
    parser.add_argument("--task", type=int, default=None, help="run one task (SLURM array body)")
    parser.add_argument("--workers", type=int, default=None, help="run the missing tasks on a local pool, then merge")
    parser.add_argument("--merge", action="store_true", help="merge the task files and draw the figure")
    parser.add_argument("--list", action="store_true", help="print the tasks")
    parser.add_argument("--ed-check", action="store_true", help="perturbative vs sector ED at N0 = 2, 3")
    parser.add_argument("--n0", type=int, nargs="+", default=None)
    parser.add_argument("--shapes", nargs="+", default=None)
    parser.add_argument("--couplings", type=float, nargs="+", default=None)
    parser.add_argument("--thresholds", type=float, nargs="+", default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    plan_path = args.plan or os.path.join(os.getcwd(), "runs", "scans", "recursion_check.toml")
    try:
        plan = load_plan(plan_path, {"n0": args.n0, "shapes": args.shapes, "couplings": args.couplings,
                                     "thresholds": args.thresholds, "samples": args.samples, "seed": args.seed})
        if args.list:
            for i, t in enumerate(tasks(plan)):
                print(i, *t)
            return 0
        if args.ed_check:
            rows = rc.ed_check(seed=plan.seed, thresholds=plan.thresholds, coupling_g=min(plan.couplings),
                               block_spec=plan.block, cl_over_ct=plan.cl_over_ct, temperature=plan.temperature,
                               omegas=plan.omegas, width=plan.width)
            out = args.outdir or plan.output_dir
            os.makedirs(out, exist_ok=True)
            path = write_table(rows, os.path.join(out, "recursion_check_ed.csv"))
            summary = rc.ed_summary(rows)
            write_table(summary, os.path.join(out, "recursion_check_ed_summary.csv"))
            print(format_table(summary, "δIm χ/(g Im χ0) in the band (powder): perturbative (per θ, θ → 0) vs sector ED"))
            print(f"wrote {path}")
            return 0
        if args.task is not None:
            print(run_task(plan, args.task))
            return 0
        if args.workers is not None:
            run_local(plan, args.workers)
        if args.merge or args.workers is not None:
            rep = merge(plan, args.outdir)
            print(rep.text)
            print(f"wrote {rep.csv_path} and {rep.png_path}")
            return 0
        parser.print_usage(sys.stderr)
        return 2
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
