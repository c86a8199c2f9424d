"""Finite-size scan in N0 of the interaction part of the super-block absorption (test of Eq. 3.7 of [ZL]).

For each shape (cube: all N0³ sites; sphere: the sites within radius N0/2 of the centre), N0 and
independent sample we draw the members (:func:`blocksim.model.blocks.make_blocks`) and their random
rotations once, and solve that same super block with the perturbative solver (Eq. 3.2, resonant
clusters exact) at every coupling g and resonance threshold θ of the scan. The interaction part of
the band Im χ tensor, δχ = Im χ[super block, g] − Im χ[members, g = 0], is split exactly into a
resonant and a non-resonant part (:mod:`blocksim.theory.interaction_split`), and

    r_a = ⟨δχ_a⟩ / (g ⟨χ_a(0)⟩),   r_a = r_resonant,a + r_nonresonant,a   (a = l, t per direction)

is the interaction part (Ė^super − Ė^(1))/Ė^(1) per unit g; Eq. (3.7) divided by Eq. (3.4) predicts
r_a = b_pred,a ln N0 with b_pred,a = −2 Re χ̃_a(ω)/(ρc_a²). Errors come from the spread of the
independent samples (delta method for the ratio of means); differences between couplings and
thresholds are paired (same blocks and rotations). Per sample, r is also extrapolated linearly in θ
to θ → 0 (rows with ``threshold = 0``) and then in g to g → 0 (``coupling_g = 0``).

Beside the Monte Carlo: ``r_semianalytic``, the first-order non-resonant prediction from
rotation-averaged single-block moments and the signed lattice sum of Λ over the same site set
(:mod:`blocksim.theory.semianalytic`, no solver), and ``pairs_estimate``, the expected number of
resonant single–single pairs from P(|V| > θ|ΔE|) summed over the lattice, next to the counted
``n_resonant_pairs``.

Work is organized as tasks (shape, N0, a range of samples; :mod:`.recursion_plan`), each writing one
``.npz`` of per-sample band tensors; :func:`reduce_samples` merges them into the table. Nothing here
is tuned toward the paper: the fits and their model comparison decide.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize as _opt

from .. import spectra as _spectra
from ..errors import InputError
from ..model import blocks as _blocks
from ..model.coupling import displacement_table, lattice_positions
from ..model.tensors import direction_strains, isotropic_projection, random_rotation
from ..theory import semianalytic as _semi
from ..theory.interaction_split import band_tensor, split_band_tensors

__all__ = ["DIRECTIONS", "SHAPES", "KEYS", "site_positions", "sample_record", "reduce_samples", "fit_models",
           "verdict", "fit_rows", "semianalytic_rows", "ed_check", "ed_summary"]

#: (name, q, [polarizations]) — the named directions of blocksim.response.chi_components.
DIRECTIONS = (
    ("100", (1.0, 0.0, 0.0), ((0.0, 1.0, 0.0),)),
    ("110", (1.0, 1.0, 0.0), ((0.0, 0.0, 1.0), (1.0, -1.0, 0.0))),
    ("111", (1.0, 1.0, 1.0), ((1.0, -1.0, 0.0),)),
)
SHAPES = ("cube", "sphere")
#: component order of the per-sample arrays
KEYS = tuple((d, p) for d in ("100", "110", "111", "powder") for p in ("l", "t"))
DIAG_NAMES = ("resonant_fraction", "n_resonant_pairs", "n_resonant_single_double", "n_dressed_members")
#: The parts of δχ a sample record holds ([nG, nθ, C] each); the last two are newer (NaN in older task files).
PARTS = ("d_res", "d_non", "d_cluster", "d_cluster_sd")


def components(tensor: np.ndarray) -> np.ndarray:
    """Values [len(KEYS)] of a 6×6 Mandel tensor along the named directions and the powder projection."""
    out = {}
    for name, q, pols in DIRECTIONS:
        e_l, _ = direction_strains(q, pols[0])
        out[(name, "l")] = float(e_l @ tensor @ e_l)
        out[(name, "t")] = float(np.mean([direction_strains(q, p)[1] @ tensor @ direction_strains(q, p)[1] for p in pols]))
    chi_l, chi_t, _ = isotropic_projection(tensor)
    out[("powder", "l")], out[("powder", "t")] = chi_l, chi_t
    return np.array([out[k] for k in KEYS])


def site_positions(shape: str, n0: int) -> np.ndarray:
    """Lattice sites of a super block: the full n0³ cube or the lattice sphere of radius n0/2."""
    if shape not in SHAPES:
        raise InputError(f"shape = {shape!r}: must be one of {', '.join(SHAPES)}")
    return lattice_positions(n0) if shape == "cube" else _spectra.sphere_positions(n0)


def sample_record(rng, shape: str, n0: int, couplings, thresholds, *, block_spec=None, cl_over_ct=1.6,
                  temperature=0.01, omegas=(0.3, 0.45, 0.6), width=0.08, table=None) -> dict:
    """One independent super block solved at every (g, θ) of the scan, on the same blocks and rotations.

    Parameters
    ----------
    rng : numpy.random.Generator
        The sample's own stream.
    shape, n0 : str, int
        Site set (:func:`site_positions`).
    couplings, thresholds : sequence of float
        g values (dimensionless, > 0) and resonance thresholds θ in (0, 1).
    block_spec : dict, optional
        Member ensemble (default generic n = 3).
    cl_over_ct, temperature, omegas, width : float
        c_l/c_t; T, probe band and Gaussian σ in units of E*.
    table : numpy.ndarray, optional
        Displacement table for n0.

    Returns
    -------
    dict
        ``base`` [C] (band Im χ of the members), ``re0`` [C] (band Re χ of the members),
        ``d_res``, ``d_non`` [nG, nθ, C] (the two parts of δχ), ``d_cluster`` [nG, nθ, C] (the cluster
        part of ``d_res``; the rest is the dressed members'), ``d_cluster_sd`` (the part of ``d_cluster`` from
        clusters holding a double), ``diag`` [nG, nθ, 4]
        (:data:`DIAG_NAMES`); C = len(KEYS).
    """
    spec = dict(block_spec or {"kind": "generic", "n": 3})
    pos = site_positions(shape, n0)
    tab = displacement_table(n0, cl_over_ct) if table is None else table
    nb = pos.shape[0]
    e, s = _blocks.make_blocks(rng, nb, spec)
    rot = random_rotation(rng, nb)
    ng, nt, nc = len(couplings), len(thresholds), len(KEYS)
    d_res, d_non, diag = np.zeros((ng, nt, nc)), np.zeros((ng, nt, nc)), np.zeros((ng, nt, len(DIAG_NAMES)))
    d_cl = np.zeros((ng, nt, nc))
    d_sd = np.zeros((ng, nt, nc))
    base = re0 = None
    for i, g in enumerate(couplings):
        sb = _spectra.assemble_superblock(e, s, rot, n0, float(g), cl_over_ct, positions=pos, table=tab)
        for j, thr in enumerate(thresholds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", _spectra.ResonanceWarning)
                sp = _spectra.solve(sb, "perturbative", resonance_threshold=float(thr))
            t = split_band_tensors(sb, sp, temperature, omegas, width)
            d_res[i, j] = components(t["im_g_res"] - t["im_0_res"])
            d_non[i, j] = components(t["im_g_non"] - t["im_0_non"])
            d_cl[i, j] = components(t["im_g_cluster"] - t["im_0_cluster"])
            d_sd[i, j] = components(t["im_g_cluster_sd"] - t["im_0_cluster_sd"])
            diag[i, j] = [float(sp.diagnostics[k]) for k in DIAG_NAMES]
            if base is None:
                base, re0 = components(t["im_0"]), components(t["re_0"])
    return {"base": base, "re0": re0, "d_res": d_res, "d_non": d_non, "d_cluster": d_cl, "d_cluster_sd": d_sd,
            "diag": diag, "members": nb}


def _ratio(num, den, g):
    """Ratio of means ⟨num⟩/(g⟨den⟩) over samples (axis 0) and its delta-method standard error."""
    n = num.shape[0]
    mn, md = num.mean(axis=0), den.mean(axis=0)
    r = mn / (g * md)
    if n < 2:
        return r, np.full_like(r, np.nan)
    resid = num / g - r * den
    return r, resid.std(axis=0, ddof=1) / math.sqrt(n) / np.abs(md)


def _lin_extrap(x, y):
    """Intercept at x = 0 of the least-squares line through (x, y) along the second-to-last axis... per sample.

    y [S, len(x), ...]; returns [S, ...]. One point: the point itself.
    """
    x = np.asarray(x, dtype=float)
    if x.size == 1:
        return y[:, 0]
    a = np.stack([np.ones_like(x), x], axis=1)
    w = np.linalg.pinv(a)[0]  # intercept weights
    return np.tensordot(y, w, axes=([1], [0]))


def reduce_samples(records: list, shape: str, n0: int, couplings, thresholds, cl_over_ct=1.6) -> list:
    """Rows of the table for one (shape, N0) from its per-sample records (see :func:`sample_record`).

    Parameters
    ----------
    records : list of dict
        Per-sample records (at least 2).
    shape, n0 : str, int
        The site set.
    couplings, thresholds : sequence of float
        The scan grid the records were computed on.
    cl_over_ct : float
        c_l/c_t (for Eq. 3.7's b_pred).

    Returns
    -------
    list of dict
        One row per (g, θ, direction, pol), plus θ → 0 rows (threshold = 0) per g and a g → 0, θ → 0
        row (coupling_g = 0). r_resonant + r_nonresonant = r_per_g and r_res_cluster + r_res_dressed =
        r_resonant (same denominator; the cluster part is NaN for task files written before it existed).
    """
    if len(records) < 2:
        raise InputError(f"{shape} N0 = {n0}: {len(records)} samples; need ≥ 2 for an error bar")
    g = np.asarray(couplings, dtype=float)
    th = np.asarray(thresholds, dtype=float)
    base = np.stack([r["base"] for r in records])  # [S, C]
    re0 = np.stack([r["re0"] for r in records])
    # per unit g: [S, nG, nθ, C] each
    dres, dnon, dcl, dsd = (np.stack([r.get(key, np.full_like(r["d_res"], np.nan)) for r in records])
                            / g[None, :, None, None] for key in PARTS)
    diag = np.stack([r["diag"] for r in records]).mean(axis=0)
    nb = records[0]["members"]
    b_pred = np.array([-2.0 * (re0[:, c].mean() / nb) / (cl_over_ct**2 if k[1] == "l" else 1.0)
                       for c, k in enumerate(KEYS)])
    rows = []

    def emit(gval, thval, xres, xnon, xcl, xsd, dg):
        r_res, e_res = _ratio(xres, base, 1.0)
        r_non, e_non = _ratio(xnon, base, 1.0)
        r_tot, e_tot = _ratio(xres + xnon, base, 1.0)
        r_cl, e_cl = _ratio(xcl, base, 1.0)
        r_dr, e_dr = _ratio(xres - xcl, base, 1.0)
        r_sd, e_sd = _ratio(xsd, base, 1.0)
        for c, (direction, pol) in enumerate(KEYS):
            rows.append({
                "shape": shape, "n0": n0, "members": nb, "samples": len(records), "coupling_g": gval,
                "threshold": thval, "direction": direction, "pol": pol,
                "r_per_g": float(r_tot[c]), "err": float(e_tot[c]),
                "r_resonant": float(r_res[c]), "err_resonant": float(e_res[c]),
                "r_nonresonant": float(r_non[c]), "err_nonresonant": float(e_non[c]),
                "r_res_cluster": float(r_cl[c]), "err_res_cluster": float(e_cl[c]),
                "r_res_dressed": float(r_dr[c]), "err_res_dressed": float(e_dr[c]),
                "r_res_cluster_sd": float(r_sd[c]), "err_res_cluster_sd": float(e_sd[c]),
                "eq37_pred": float(b_pred[c] * math.log(n0)), "b_pred": float(b_pred[c]),
                **({k: float(v) for k, v in zip(DIAG_NAMES, dg)} if dg is not None else
                   {k: float("nan") for k in DIAG_NAMES}),
            })

    for i, gv in enumerate(g):
        for j, tv in enumerate(th):
            emit(float(gv), float(tv), dres[:, i, j], dnon[:, i, j], dcl[:, i, j], dsd[:, i, j], diag[i, j])
    # θ → 0 per sample (paired), then g → 0
    res0 = _lin_extrap(th, np.moveaxis(dres, 2, 1))  # [S, nG, C]
    non0 = _lin_extrap(th, np.moveaxis(dnon, 2, 1))
    cl0 = _lin_extrap(th, np.moveaxis(dcl, 2, 1))
    sd0 = _lin_extrap(th, np.moveaxis(dsd, 2, 1))
    if th.size > 1:
        for i, gv in enumerate(g):
            emit(float(gv), 0.0, res0[:, i], non0[:, i], cl0[:, i], sd0[:, i], None)
    if g.size > 1:
        emit(0.0, 0.0 if th.size > 1 else float(th[0]), _lin_extrap(g, res0), _lin_extrap(g, non0),
             _lin_extrap(g, cl0), _lin_extrap(g, sd0), None)
    return rows


# ---------------------------------------------------------------------------------------------- fits
def _chi2(y, f, err):
    return float(np.sum(((y - f) / err) ** 2))


def fit_models(n0, r, err) -> dict:
    """Weighted fits of r(N0): constant, a + b ln N0, a − c/N0, a N0^p; parameters, χ²/dof, AIC and the best model.

    Parameters
    ----------
    n0, r, err : array_like
        Lattice edges, values and their standard errors.

    Returns
    -------
    dict
        ``const_a``, ``log_a``, ``log_b``, ``log_err_b``, ``sat_a``, ``sat_c``, ``sat_err_c``, ``pow_a``,
        ``pow_p``, ``pow_err_p``, each model's ``*_chi2dof`` and ``*_aic`` (χ² + 2k), and ``best`` (lowest AIC).
    """
    n0 = np.asarray(n0, dtype=float)
    r = np.asarray(r, dtype=float)
    err = np.maximum(np.asarray(err, dtype=float), 1e-300)
    w = 1.0 / err**2
    npt = len(r)
    out = {}
    a0 = float(np.sum(w * r) / np.sum(w))
    c2 = _chi2(r, a0, err)
    out.update(const_a=a0, const_chi2dof=c2 / max(npt - 1, 1), const_aic=c2 + 2)

    def linear(name, x, pa, pb):
        amat = np.stack([np.ones_like(n0), x], axis=1)
        cov = np.linalg.inv(amat.T @ (w[:, None] * amat))
        coef = cov @ (amat.T @ (w * r))
        chi2 = _chi2(r, amat @ coef, err)
        out[f"{name}_{pa}"], out[f"{name}_{pb}"] = float(coef[0]), float(coef[1])
        out[f"{name}_err_{pb}"] = float(math.sqrt(cov[1, 1]))
        out[f"{name}_chi2dof"] = chi2 / max(npt - 2, 1)
        out[f"{name}_aic"] = chi2 + 4

    linear("log", np.log(n0), "a", "b")
    linear("sat", -1.0 / n0, "a", "c")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = _opt.curve_fit(lambda x, a, p: a * x**p, n0, r, p0=(a0 if a0 != 0 else 1.0, 0.0), sigma=err,
                                        absolute_sigma=True, maxfev=20000)
        chi2 = _chi2(r, popt[0] * n0 ** popt[1], err)
        out.update(pow_a=float(popt[0]), pow_p=float(popt[1]),
                   pow_err_p=float(math.sqrt(pcov[1, 1])) if np.isfinite(pcov[1, 1]) else float("nan"),
                   pow_chi2dof=chi2 / max(npt - 2, 1), pow_aic=chi2 + 4)
    except (RuntimeError, ValueError, _opt.OptimizeWarning):
        out.update(pow_a=float("nan"), pow_p=float("nan"), pow_err_p=float("nan"), pow_chi2dof=float("nan"),
                   pow_aic=float("inf"))
    aics = {m: out[f"{m}_aic"] for m in ("const", "log", "sat", "pow")}
    out["best"] = min(aics, key=lambda m: aics[m] if np.isfinite(aics[m]) else np.inf)
    return out


def verdict(fit: dict, b_pred: float) -> str:
    """Plain-language reading of one series' fits (3σ for b ≠ 0, χ²/dof < 2 for 'fits', best AIC named)."""
    b, eb = fit["log_b"], fit["log_err_b"]
    grows = abs(b) > 3 * eb
    const_ok = fit["const_chi2dof"] < 2.0
    log_ok = fit["log_chi2dof"] < 2.0
    agrees = abs(b - b_pred) < 3 * eb
    best = f" (best AIC: {fit['best']})" if "best" in fit else ""
    if grows and log_ok and not const_ok:
        return "ln N0 growth" + (", slope agrees with Eq. 3.7" if agrees else ", slope differs from Eq. 3.7") + best
    if not grows and const_ok:
        return "no ln N0 growth (constant fits)" + ("" if not agrees else "; Eq. 3.7 slope not excluded") + best
    return "inconclusive" + best


def fit_rows(rows, parts=("r_per_g", "r_resonant", "r_nonresonant")) -> list:
    """Fits over N0 of every series (shape, g, θ, direction, pol) and part, with the verdict.

    Parameters
    ----------
    rows : list of dict
        Table rows (:func:`reduce_samples`).
    parts : sequence of str
        Columns to fit (their errors are ``err``, ``err_resonant``, ``err_nonresonant``).

    Returns
    -------
    list of dict
    """
    err_of = {"r_per_g": "err", "r_resonant": "err_resonant", "r_nonresonant": "err_nonresonant"}
    out = []
    keys = sorted({(r["shape"], r["coupling_g"], r["threshold"], r["direction"], r["pol"]) for r in rows}, key=str)
    for key in keys:
        ser = sorted([r for r in rows if (r["shape"], r["coupling_g"], r["threshold"], r["direction"], r["pol"]) == key],
                     key=lambda r: r["n0"])
        if len(ser) < 3:
            continue
        n0 = [r["n0"] for r in ser]
        b_pred = float(np.mean([r["b_pred"] for r in ser]))
        for part in parts:
            err = [r[err_of[part]] for r in ser]
            if not np.all(np.isfinite(err)) or min(err) <= 0:
                continue
            fit = fit_models(n0, [r[part] for r in ser], err)
            out.append({"shape": key[0], "coupling_g": key[1], "threshold": key[2], "direction": key[3], "pol": key[4],
                        "part": part, **fit, "b_pred_eq37": b_pred, "verdict": verdict(fit, b_pred)})
    return out


# --------------------------------------------------------------------------------- semi-analytic route
def semianalytic_rows(shapes, n0_values, *, block_spec=None, cl_over_ct=1.6, omegas=(0.3, 0.45, 0.6), width=0.08,
                      moment_samples=40000, seed=2024, limit_n0=(24, 32)) -> tuple[dict, list]:
    """r_semianalytic for every (shape, N0, direction, pol), and its large-N0 values.

    Parameters
    ----------
    shapes, n0_values : sequence
        Site sets.
    block_spec : dict, optional
        Member ensemble (default generic n = 3).
    cl_over_ct, omegas, width : float
        As in :func:`sample_record`.
    moment_samples : int
        Blocks drawn for the single-block moments.
    seed : int
        Seed of the moments' stream.
    limit_n0 : sequence of int
        Larger N0 at which the per-member lattice sum (and r) is evaluated for the N0 → ∞ limit.

    Returns
    -------
    (dict, list)
        ``{(shape, n0): values [C]}`` and rows ``{shape, n0, direction, pol, r_semianalytic}`` for the
        limit sizes.
    """
    spec = dict(block_spec or {"kind": "generic", "n": 3})
    mom = _semi.single_block_moments(spec, np.random.default_rng(seed), samples=moment_samples, omegas=omegas,
                                     width=width)
    values = {}
    limit_rows = []
    for shape in shapes:
        for n0 in sorted(set(n0_values) | set(limit_n0)):
            pos = site_positions(shape, n0)
            s_sum = _semi.lattice_sum(pos, cl_over_ct)
            dchi, base = _semi.predicted_tensors(mom, s_sum, pos.shape[0])
            vals = components(dchi) / components(base)
            values[(shape, n0)] = vals
            if n0 in limit_n0:
                for c, (d, p) in enumerate(KEYS):
                    limit_rows.append({"shape": shape, "n0": n0, "direction": d, "pol": p,
                                       "r_semianalytic": float(vals[c])})
    return values, limit_rows


# ------------------------------------------------------------------------------------ exact-diag check
def ed_check(n0_values=(2, 3), samples=(40, 10), coupling_g=1e-3, thresholds=(0.05, 0.1, 0.2), *, block_spec=None,
             cl_over_ct=1.6, temperature=0.01, omegas=(0.3, 0.45, 0.6), width=0.08, seed=99) -> list:
    """Perturbative solver (resonant clusters exact) against sector ED on the same super blocks.

    Sector ED keeps every state with at most two excited members (singles and doubles, exact within
    that space). Per sample: the interaction part δIm χ (powder l, t) in the band, relative to the
    members' band Im χ and per unit g: perturbative at every θ (total and resonant part), its linear
    extrapolation θ → 0, and sector ED.

    Parameters
    ----------
    n0_values : sequence of int
        Small cubes (N0 = 2, 3).
    samples : sequence of int
        Super blocks per N0 (same length as ``n0_values``).
    coupling_g : float
        g.
    thresholds : sequence of float
        θ values of the perturbative solver.
    block_spec : dict, optional
        Member ensemble.
    cl_over_ct, temperature, omegas, width : float
        As in :func:`sample_record`.
    seed : int
        Seed.

    Returns
    -------
    list of dict
        One row per (N0, sample, pol): ``d_pert_<θ>``, ``d_res_<θ>``, ``d_pert_theta0``, ``d_sector``,
        ``resonant_fraction`` (at the middle θ).
    """
    spec = dict(block_spec or {"kind": "generic", "n": 3})
    th = np.asarray(thresholds, dtype=float)
    rows = []
    for n0, count in zip(n0_values, samples):
        pos = lattice_positions(n0)
        tab = displacement_table(n0, cl_over_ct)
        ip = [c for c, k in enumerate(KEYS) if k[0] == "powder"]
        for k in range(count):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(n0, k)))
            e, s = _blocks.make_blocks(rng, pos.shape[0], spec)
            rot = random_rotation(rng, pos.shape[0])
            sb = _spectra.assemble_superblock(e, s, rot, n0, coupling_g, cl_over_ct, positions=pos, table=tab)
            pert, res, frac = [], [], []
            for thr in th:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", _spectra.ResonanceWarning)
                    sp = _spectra.solve(sb, "perturbative", resonance_threshold=float(thr))
                t = split_band_tensors(sb, sp, temperature, omegas, width)
                base = components(t["im_0"])
                pert.append(components(t["im_g"] - t["im_0"]) / (coupling_g * base))
                res.append(components(t["im_g_res"] - t["im_0_res"]) / (coupling_g * base))
                frac.append(float(sp.diagnostics["resonant_fraction"]))
            pert, res = np.array(pert), np.array(res)
            theta0 = _lin_extrap(th, pert[None])[0]
            sec = _spectra.solve(sb, "sector", max_excitations=2)
            im_sec = band_tensor(sec.transitions([temperature]), "im_chi", omegas, width)
            d_sec = components(im_sec - t["im_0"]) / (coupling_g * base)
            for c in ip:
                row = {"n0": n0, "sample": k, "pol": KEYS[c][1], "coupling_g": coupling_g}
                for j, thr in enumerate(th):
                    row[f"d_pert_{thr:g}"] = float(pert[j, c])
                    row[f"d_res_{thr:g}"] = float(res[j, c])
                row["d_pert_theta0"] = float(theta0[c])
                row["d_sector"] = float(d_sec[c])
                row["resonant_fraction"] = frac[len(frac) // 2]
                rows.append(row)
    return rows


def ed_summary(rows) -> list:
    """Mean ± standard error over samples of each ``d_*`` column of :func:`ed_check`, and of (perturbative − ED)
    with its median (robust against the few samples with a soft member, gap ≲ T, where the two treatments of
    thermal populations differ at O(g))."""
    out = []
    for n0 in sorted({r["n0"] for r in rows}):
        for pol in ("l", "t"):
            ser = [r for r in rows if r["n0"] == n0 and r["pol"] == pol]
            row = {"n0": n0, "pol": pol, "samples": len(ser)}
            for key in [k for k in ser[0] if k.startswith("d_")]:
                v = np.array([r[key] for r in ser])
                row[key] = float(v.mean())
                row[f"{key}_err"] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
                if key.startswith("d_pert"):
                    diff = v - np.array([r["d_sector"] for r in ser])
                    row[f"{key}_minus_ed_median"] = float(np.median(diff))
                    row[f"{key}_minus_ed"] = float(diff.mean())
                    row[f"{key}_minus_ed_err"] = float(diff.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
            out.append(row)
    return out
