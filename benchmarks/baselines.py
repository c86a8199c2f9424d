"""Plain NumPy baselines for ``blocksim bench``: the same numbers as the numba kernels, vectorized.

These are fair baselines, not the slow obvious references of the library (``displacement_table_reference``
loops in Python; ``perturbative_amplitudes(use_kernels=False)`` builds N×N×6×6 arrays). Each one is
written the way a NumPy programmer would write it: whole-array expressions, chunked where the
intermediate arrays would grow like N², so that memory stays bounded. Tests check that they give the
same numbers as the kernels (tests/test_large_lattice.py).
"""

from __future__ import annotations

import numpy as np

from blocksim.model.coupling import alpha_from_ratio
from blocksim.model.tensors import MANDEL_INDEX, MANDEL_WEIGHT

__all__ = ["displacement_table_numpy", "pair_sums_numpy", "CHUNK_ELEMENTS"]

#: Upper bound on (rows of s in one chunk) × N for the chunked pair sums: 2e5 pairs ≈ 60 MB of Λ.
CHUNK_ELEMENTS = 200_000


def displacement_table_numpy(n0: int, cl_over_ct: float, form: str = "zhou-leggett") -> np.ndarray:
    """Λ for every displacement of an n0³ lattice, ``[2n0−1]³×[6, 6]``, as whole-array NumPy.

    Same definition as :func:`blocksim.coupling.displacement_table` (Eq. A15 of [ZL], or A1 for
    ``form="joffrin-levelut"``; ρ c_t² = 1, lattice spacing 1, zero at d = 0): the 4-index tensor is
    built for all displacements at once from δ and n, projected onto its minor symmetries and
    converted to Mandel form.
    """
    alpha = alpha_from_ratio(cl_over_ct)
    m = 2 * n0 - 1
    g = np.arange(m, dtype=float) - (n0 - 1)
    d = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
    r = np.linalg.norm(d, axis=1)
    nonzero = r > 0
    d, r = d[nonzero], r[nonzero]
    n = d / r[:, None]
    k = np.eye(3)
    nn = np.einsum("pi,pj->pij", n, n)
    dd = np.einsum("ij,kl->ijkl", k, k)
    # bracket = −(δ_ij δ_kl + δ_ik δ_jl + δ_jk δ_il) + 3(n_i n_j δ_kl + n_i n_k δ_jl + n_i n_l δ_jk
    #           + n_j n_k δ_il + n_j n_l δ_ik + n_k n_l δ_ij) − 15 n_i n_j n_k n_l
    bracket = -(dd + dd.transpose(0, 2, 1, 3) + dd.transpose(0, 2, 3, 1))[None]
    bracket = bracket + 3.0 * (
        np.einsum("pij,kl->pijkl", nn, k)
        + np.einsum("pik,jl->pijkl", nn, k)
        + np.einsum("pil,jk->pijkl", nn, k)
        + np.einsum("pjk,il->pijkl", nn, k)
        + np.einsum("pjl,ik->pijkl", nn, k)
        + np.einsum("pkl,ij->pijkl", nn, k)
    )
    bracket -= 15.0 * np.einsum("pij,pkl->pijkl", nn, nn)
    ones = np.ones(len(n))[:, None, None, None, None]
    dnn = k[None] - 3.0 * nn  # δ_ab − 3 n_a n_b
    if form == "zhou-leggett":
        first = 0.25 * (
            np.einsum("pjl,ik->pijkl", dnn, k)
            + np.einsum("pjk,il->pijkl", dnn, k)
            + np.einsum("pik,jl->pijkl", dnn, k)
            + np.einsum("pil,jk->pijkl", dnn, k)
        )
        lam_t = first + 0.5 * alpha * bracket
    elif form == "joffrin-levelut":
        lam_t = -2.0 * np.einsum("pjl,ik->pijkl", dnn, k) * ones + 2.0 * alpha * bracket
    else:
        raise ValueError(f"form = {form!r}")
    sym = 0.25 * (lam_t + lam_t.transpose(0, 2, 1, 3, 4) + lam_t.transpose(0, 1, 2, 4, 3)
                  + lam_t.transpose(0, 2, 1, 4, 3))
    mi = np.array([p[0] for p in MANDEL_INDEX])
    mj = np.array([p[1] for p in MANDEL_INDEX])
    mandel = sym[:, mi[:, None], mj[:, None], mi[None, :], mj[None, :]]
    mandel = mandel * (np.outer(MANDEL_WEIGHT, MANDEL_WEIGHT))[None]
    mandel *= (-1.0 / (8.0 * np.pi * r**3))[:, None, None]
    table = np.zeros((m**3, 6, 6))
    table[nonzero] = mandel
    return table.reshape(m, m, m, 6, 6)


def pair_sums_numpy(positions, table, n0, g, energies, u, t0, thr, chunk_elements=CHUNK_ELEMENTS):
    """The two first-order pair sums of the perturbative solver, chunked whole-array NumPy.

    Returns ``h [N, 6]`` (local field g·Σ_{s'≠s} Λ^(ss')·t0^(s')), ``delta [N, n, 6]`` (two-body
    correction to ⟨s,m|T_tot|0⟩, row m = 0 zero) and ``nres [N]`` (resonant pairs per member), the same
    quantities as ``_local_field_kernel`` (times g) and ``_pair_kernel`` of :mod:`blocksim.spectra`.
    Rows of s are processed in chunks of ``chunk_elements // N`` so that the gathered Λ stays
    ≈ 288·chunk_elements bytes whatever N is.

    positions int64 [N, 3]; table [2n0−1]³×[6, 6]; energies [N, n] (levels used for the pair sums);
    u [N, n, 6] = ⟨m|T^(s)|0⟩; t0 [N, 6].
    """
    nb, nl = energies.shape
    ne = nl - 1
    off = n0 - 1
    e = energies[:, 1:]  # [N, ne]
    uu = u[:, 1:, :]  # [N, ne, 6]
    uu_t = np.ascontiguousarray(np.swapaxes(uu, 1, 2))  # [N, 6, ne]
    uu_flat = uu.reshape(nb * ne, 6)
    h = np.empty((nb, 6))
    delta = np.zeros((nb, nl, 6))
    nres = np.empty(nb, dtype=np.int64)
    step = max(1, int(chunk_elements) // max(nb, 1))
    t_idx = np.arange(nb)
    for c0 in range(0, nb, step):
        rows = np.arange(c0, min(nb, c0 + step))
        d = positions[rows, None, :] - positions[None, :, :] + off
        lam = g * table[d[..., 0], d[..., 1], d[..., 2]]  # [cs, N, 6, 6], zero for t = s
        h[rows] = np.einsum("stab,tb->sa", lam, t0, optimize=True)
        w = lam @ uu_t[None]  # [cs, N, 6, ne]: Λ·u^t_p
        v = 2.0 * (uu[rows][:, None, :, :] @ w)  # [cs, N, ne(m), ne(p)]
        diff = e[rows][:, None, :, None] - e[None, :, None, :]
        summ = e[rows][:, None, :, None] + e[None, :, None, :]
        self_pair = (rows[:, None] == t_idx[None, :])[:, :, None, None]
        res = (np.abs(v) > thr * np.abs(diff)) & (v != 0) & ~self_pair
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.where(res | (diff == 0), 0.0, 1.0 / np.where(diff == 0, 1.0, diff)) - 1.0 / summ
        f = v * coef  # [cs, N, m, p]
        f = np.ascontiguousarray(np.transpose(f, (0, 2, 1, 3))).reshape(len(rows), ne, nb * ne)
        delta[rows, 1:, :] = f @ uu_flat
        nres[rows] = res.sum(axis=(1, 2, 3))
    return h, delta, nres
