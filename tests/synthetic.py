"""Synthetic trajectory files following BRIEF §4 exactly, with known answers, for the analysis tests.

``write_synthetic(path, ...)`` writes a complete "blocksim-trajectory" file (format_version 1) whose
per-step MB, reference absorption and Re χ(T) follow given formulas:

* −Im χ_{l,t}(T, ω) at the reference point flows as a_{l,t} + b_{l,t}·k (k = step, L = N0^k) plus
  optional Gaussian noise ``noise``; the full arrays are that value times a smooth shape
  s(T, ω) = 1/(1 + ω) · tanh(ω/2T)/tanh(ω_ref/2T_ref)… normalised to 1 at (T_ref, ω_ref);
* MB per step is sqrt(Im χ_l/Im χ_t) of those reference values (+ ``mb_noise`` if given), with
  pool error ``mb_err``;
* Re χ_{l,t}(T, ω) = A_{l,t}·ln T + B_{l,t} (slopes ``re_slope_l``, ``re_slope_t``), so the
  experiment route's γ_l/γ_t is sqrt(A_l/A_t).
"""

from __future__ import annotations

import numpy as np

N_KEEP = 3


def _dataset(group, name, data, units, description):
    ds = group.create_dataset(name, data=data)
    ds.attrs["units"] = units
    ds.attrs["description"] = description
    return ds


def config_toml(cl_over_ct, coupling, n0, seed, n_steps):
    return (
        "[model]\n"
        f'block = "generic"\nn = 3\ncl_over_ct = {cl_over_ct!r}\ncoupling = {coupling!r}\n\n'
        f"[lattice]\nn0 = {n0}\n\n"
        f"[rg]\nsteps = {n_steps}\npool_size = 4\nn_keep = {N_KEEP}\n\n"
        f"[run]\nseed = {seed}\n"
    )


def write_synthetic(
    path,
    *,
    n_steps=4,
    n0=2,
    cl_over_ct=1.6,
    coupling=0.05,
    seed=0,
    a_l=1.0,
    b_l=0.5,
    a_t=0.4,
    b_t=0.2,
    noise=0.0,
    mb_noise=0.0,
    mb_err=0.01,
    re_slope_l=0.3,
    re_slope_t=0.1,
    omega=None,
    temperature=None,
    pool_size=4,
    status="complete",
    incomplete_last=False,
):
    """Write one synthetic trajectory; returns ``path``. ``seed`` drives the noise."""
    import h5py

    rng = np.random.default_rng(seed)
    omega = np.geomspace(0.01, 1.0, 12) if omega is None else np.asarray(omega, dtype=float)
    temperature = np.geomspace(0.02, 0.5, 6) if temperature is None else np.asarray(temperature, dtype=float)
    j_ref = omega.size // 2
    t_ref = temperature[0]
    shape = (1.0 / (1.0 + omega))[None, :] * np.tanh(omega[None, :] / (2 * temperature[:, None]))
    shape = shape / shape[0, j_ref]
    m = n0**3
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "blocksim-trajectory"
        f.attrs["format_version"] = 1
        f.attrs["blocksim_version"] = "0.1.0"
        f.attrs["git_commit"] = "synthetic"
        f.attrs["created"] = "2024-01-01T00:00:00"
        f.attrs["config_toml"] = config_toml(cl_over_ct, coupling, n0, seed, n_steps)
        f.attrs["seed_entropy"] = str(seed)
        f.attrs["spawn_key"] = np.zeros(0, dtype=np.int64)
        f.attrs["status"] = "running"
        params = f.create_group("parameters")
        params.attrs["model.cl_over_ct"] = cl_over_ct
        params.attrs["model.coupling"] = coupling
        params.attrs["lattice.n0"] = n0
        steps = f.create_group("steps")
        summ = {k: [] for k in ("step", "scale_L", "mb_ratio", "mb_ratio_err", "im_chi_l_ref", "im_chi_t_ref")}
        for k in range(n_steps):
            g = steps.create_group(f"step_{k}")
            ref_l = -(a_l + b_l * k + noise * rng.standard_normal())
            ref_t = -(a_t + b_t * k + noise * rng.standard_normal())
            mb = float(np.sqrt(ref_l / ref_t)) + mb_noise * rng.standard_normal()
            scale = float(n0**k)
            _dataset(g, "scale_L", scale, "L_1", "block size L_k = N0^k L_1")
            _dataset(g, "coupling_g", coupling / n0 ** (3 * k), "1", "coupling g_k = g/N0^(3k)")
            _dataset(g, "omega", omega, "E*", "frequency grid")
            _dataset(g, "temperature", temperature, "E*", "temperature grid")
            _dataset(g, "im_chi_l", ref_l * shape, "T*^2/(E* V)", "Im chi_l, powder average")
            _dataset(g, "im_chi_t", ref_t * shape, "T*^2/(E* V)", "Im chi_t, powder average")
            re_l = re_slope_l * np.log(temperature)[:, None] - 2.0 + 0 * omega[None, :]
            re_t = re_slope_t * np.log(temperature)[:, None] - 1.0 + 0 * omega[None, :]
            _dataset(g, "re_chi_l", re_l, "T*^2/(E* V)", "Re chi_l, powder average")
            _dataset(g, "re_chi_t", re_t, "T*^2/(E* V)", "Re chi_t, powder average")
            _dataset(g, "mb_ratio", mb, "1", "sqrt(Im chi_l/Im chi_t) at the reference point")
            _dataset(g, "mb_ratio_err", mb_err, "1", "standard error over the pool")
            d = g.create_group("diagnostics")
            _dataset(d, "kept_weight", 0.99, "1", "fraction of spectral weight kept")
            _dataset(d, "resonances", 0, "1", "resonant pairs")
            pool = g.create_group("pool")
            p = pool_size * m ** (n_steps - 1 - k) if k < n_steps else pool_size
            _dataset(pool, "energies", np.sort(rng.random((p, N_KEEP)), axis=1) * [0, 1, 1], "E*", "pool levels")
            _dataset(pool, "stress", np.zeros((p, 6, N_KEEP, N_KEEP)), "T*", "pool stress (Mandel)")
            sb = g.create_group("superblocks")
            _dataset(sb, "members", np.arange(p).reshape(-1, m) if p % m == 0 else np.zeros((0, m), int),
                     "1", "pool indices of the members")
            _dataset(sb, "rotations", np.broadcast_to(np.eye(3), (p // m, m, 3, 3)).copy(), "1", "rotations")
            if not (incomplete_last and k == n_steps - 1):
                g.attrs["complete"] = True
            summ["step"].append(k)
            summ["scale_L"].append(scale)
            summ["mb_ratio"].append(mb)
            summ["mb_ratio_err"].append(mb_err)
            summ["im_chi_l_ref"].append(ref_l)
            summ["im_chi_t_ref"].append(ref_t)
        s = f.create_group("summary")
        s.attrs["reference_temperature"] = t_ref
        s.attrs["reference_omega"] = omega[j_ref]
        n_done = n_steps - 1 if incomplete_last else n_steps
        for key, vals in summ.items():
            _dataset(s, key, np.asarray(vals)[:n_done], "see /steps", f"per-step {key}")
        f.attrs["status"] = status
    return path
