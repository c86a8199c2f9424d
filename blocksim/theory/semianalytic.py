"""Semi-analytic first-order interaction part of the super-block absorption (non-resonant part).

Independent of the solvers: single-block moments of the ensemble, rotation averaged, contracted with
lattice sums of Λ (Eq. A15 of [ZL]) over the actual site set. In first-order perturbation theory
(Eq. 3.2) the band Im χ tensor of a super block changes by (ρ c_t² = 1, lattice spacing 1)

    δχ = δχ_2 + δχ_1,
    δχ_2 = 2g Σ_{x,y ∈ {b,d}} K_xy (P_x S P_y + P_y S P_x),       (two-body admixtures)
    δχ_1 = g D̄ · (S t̄_0),                                          (one-body: local field h)

with S = Σ_{s≠t} Λ(r_s − r_t) the signed 6×6 lattice sum over ordered pairs of the site set,
P_b, P_d the bulk and deviatoric Mandel projectors and

* K_xy = ⟨Σ_m w_x(u_m) L(E_m) b_y(E_m)⟩: the dynamic band weight of a transition u_m = ⟨m|T|0⟩
  at E_m (L = the band-averaged line, w_b = (u·v_b)², w_d = (|u|² − w_b)/5 the isotropic
  components of u uᵀ) times the static/dynamic susceptibility of the partner,
  B(E) = ⟨Σ_m' u_m' u_m'ᵀ · 2E_m'/(E² − E_m'²)⟩ = b_b(E) P_b + b_d(E) P_d (principal value: the
  1/(E − E') part of Eq. 3.2 is regularized as (E − E')/((E − E')² + η²); the −1/(E + E') part is
  the pair admixture of the ground state);
* D̄_abc = ∂⟨Σ_m u_a u_b L(E_m)⟩/∂h_c, the rotation average of a single block's band response to a
  uniform one-body field (H_0 + 2h·T), by central differences and exact projection onto the four
  isotropic rank-3 invariants;
* t̄_0 = the rotation-averaged ⟨0|T|0⟩ (bulk part of ⟨T_00⟩), so the mean local field on member s is
  g Σ_t Λ^(st) t̄_0.

The baseline is χ_0 = N (a_b P_b + a_d P_d), a_x = ⟨Σ_m w_x L(E_m)⟩, and the prediction per unit g
is r = e·δχ·e / (g e·χ_0·e) for a strain e (or the powder projection). Resonant pairs are not
excluded (principal value), which is the g → 0 limit of the solver's non-resonant part. Temperature
is taken as 0 (every member in its ground state). Units: energies, ω, width, η in E*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..model import blocks as _blocks
from ..model.coupling import displacement_table
from ..model.tensors import (BULK_PROJECTOR, DEVIATORIC_PROJECTOR, MANDEL_INDEX, MANDEL_WEIGHT, random_rotation,
                             rotation_mandel)
from ..response import line_profiles

__all__ = [
    "BlockMoments",
    "single_block_moments",
    "pair_counts",
    "lattice_sum",
    "lattice_sum_abs",
    "isotropic_rank3_projection",
    "predicted_tensors",
    "resonant_pair_estimate",
    "normalization_excess",
]

_V_BULK = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]) / np.sqrt(3.0)


@dataclass(frozen=True)
class BlockMoments:
    """Rotation-averaged single-block moments of an ensemble in a probe band (units: T*², E*).

    a: [2] (a_b, a_d) band weight; k: [2, 2] K_xy; d_bar: [6, 6, 6] D̄; t0_bar: [6] bulk ⟨0|T|0⟩;
    energies_ex: excitation energies of the sample [S·(n−1)]; u_ex: their ⟨m|T|0⟩ [S·(n−1), 6]
    (block frame, unrotated), for the resonant-pair estimate.
    """

    a: np.ndarray
    k: np.ndarray
    d_bar: np.ndarray
    t0_bar: np.ndarray
    energies_ex: np.ndarray
    u_ex: np.ndarray
    #: J = ⟨Σ_m L(E_m) ρ(E_m)⟩ (ρ: density of excitation energies per block, Gaussian kernel 0.02 E*)
    j_band: float = float("nan")


def _band(energies, omegas, width):
    """Band-averaged Gaussian line L(E) = mean_ω g(ω − E), same shape as the response layer's."""
    e = np.asarray(energies, dtype=float)
    return line_profiles(e.ravel(), np.asarray(omegas, dtype=float), "gaussian", width, "im").mean(axis=1).reshape(e.shape)


def _iso_weights(u):
    """(w_b, w_d) of u uᵀ for u [..., 6]: w_b = (u·v_b)², w_d = (|u|² − w_b)/5."""
    wb = (u @ _V_BULK) ** 2
    return wb, (np.sum(u * u, axis=-1) - wb) / 5.0


def _mandel_basis():
    m = np.zeros((6, 3, 3))
    for a, (i, j) in enumerate(MANDEL_INDEX):
        if i == j:
            m[a, i, i] = 1.0
        else:
            m[a, i, j] = m[a, j, i] = 1.0 / MANDEL_WEIGHT[a]
    return m


def _rank3_invariants():
    """The four isotropic rank-3 Mandel tensors symmetric in (a, b), as [4, 6, 6, 6]."""
    m = _mandel_basis()
    tr = np.einsum("aii->a", m)
    tr2 = np.einsum("aij,bji->ab", m, m)
    tr3 = np.einsum("aij,bjk,cki->abc", m, m, m)
    i1 = np.einsum("a,b,c->abc", tr, tr, tr)
    i2 = np.einsum("ab,c->abc", tr2, tr)
    i3 = 0.5 * (np.einsum("a,bc->abc", tr, tr2) + np.einsum("b,ac->abc", tr, tr2))
    return np.stack([i1, i2, i3, tr3])


def isotropic_rank3_projection(d):
    """Rotation (Haar) average of a rank-3 Mandel tensor ``d [6, 6, 6]`` symmetric in its first two indices.

    Parameters
    ----------
    d : array_like
        [6, 6, 6] tensor, d_abc with (a, b) symmetric.

    Returns
    -------
    numpy.ndarray
        [6, 6, 6]: the orthogonal projection onto the isotropic invariants (tr a tr b tr c,
        tr(ab) tr c, sym tr a tr(bc), tr(abc)), which equals the average over SO(3) because the
        Mandel rotation representation is orthogonal.
    """
    d = np.asarray(d, dtype=float)
    if d.shape != (6, 6, 6):
        raise InputError(f"d shape = {d.shape}: must be (6, 6, 6)")
    d = 0.5 * (d + d.transpose(1, 0, 2))
    basis = _rank3_invariants().reshape(4, -1)
    gram = basis @ basis.T
    coef = np.linalg.solve(gram, basis @ d.ravel())
    return (coef @ basis).reshape(6, 6, 6)


def _band_response(energies, stress, omegas, width):
    """Σ_{m≥1} u_m u_mᵀ L(E_m) per block: [S, 6, 6] (energies [S, n] ascending, ground 0)."""
    u = np.moveaxis(stress[:, :, 0, 1:], 1, 2)  # [S, n-1, 6]
    lw = _band(energies[:, 1:], omegas, width)
    return np.einsum("sma,smb,sm->sab", u, u, lw)


def single_block_moments(block_spec: dict, rng: np.random.Generator, *, samples: int = 20000, omegas=(0.3, 0.45, 0.6),
                         width: float = 0.08, eta: float = 0.02, epsilon: float = 1e-5) -> BlockMoments:
    """Rotation-averaged moments of ``samples`` blocks of ``block_spec`` (see the module docstring).

    Parameters
    ----------
    block_spec : dict
        Block ensemble (:func:`blocksim.model.blocks.make_blocks`).
    rng : numpy.random.Generator
        Random stream.
    samples : int
        Number of blocks drawn.
    omegas : array_like
        Probe band, units E*.
    width : float
        Gaussian σ of the lines, units E*.
    eta : float
        Principal-value regularization of 1/(E − E'), units E*.
    epsilon : float
        Field step for the one-body derivative D̄, units E*/T*.

    Returns
    -------
    BlockMoments
    """
    if samples < 100:
        raise InputError(f"samples = {samples}: need ≥ 100 blocks for the moments")
    e, st = _blocks.make_blocks(rng, int(samples), dict(block_spec))
    nl = e.shape[1]
    u = np.moveaxis(st[:, :, 0, 1:], 1, 2).reshape(-1, 6)  # [S(n-1), 6]
    ex = e[:, 1:].ravel()
    wb, wd = _iso_weights(u)
    lw = _band(ex, omegas, width)
    a = np.array([np.sum(wb * lw), np.sum(wd * lw)]) / samples
    # B(E) on a grid, then at each transition energy inside the band's support
    grid = np.linspace(0.0, float(np.max(ex)) * 1.05 + 1e-9, 600)
    b = np.zeros((2, grid.size))
    for j0 in range(0, grid.size, 50):
        g = grid[j0:j0 + 50, None]
        diff = g - ex[None, :]
        kern = diff / (diff * diff + eta * eta) - 1.0 / (g + ex[None, :])
        b[0, j0:j0 + 50] = kern @ wb / samples
        b[1, j0:j0 + 50] = kern @ wd / samples
    b_at = np.stack([np.interp(ex, grid, b[0]), np.interp(ex, grid, b[1])])  # [2, M]
    w = np.stack([wb, wd])
    k = np.einsum("xm,m,ym->xy", w, lw, b_at) / samples
    # one-body derivative: central differences of the band response in a uniform field h = ±ε ê_c
    d = np.zeros((6, 6, 6))
    for c in range(6):
        resp = []
        for sign in (1.0, -1.0):
            h = e[:, :, None] * np.eye(nl)[None] + 2.0 * sign * epsilon * st[:, c]
            lev, vec = np.linalg.eigh(h)
            stress_h = np.einsum("sni,sanm,smj->saij", vec, st, vec)
            resp.append(_band_response(lev - lev[:, :1], stress_h, omegas, width).mean(axis=0))
        d[:, :, c] = (resp[0] - resp[1]) / (2.0 * epsilon)
    d_bar = isotropic_rank3_projection(d)
    t0_bar = float(np.mean(st[:, :, 0, 0] @ _V_BULK)) * _V_BULK
    rho = _level_density(ex, ex, samples, 0.02)
    j_band = float(np.sum(lw * rho) / samples)
    return BlockMoments(a=a, k=k, d_bar=d_bar, t0_bar=t0_bar, energies_ex=ex, u_ex=u, j_band=j_band)


def _level_density(at, ex, samples, bw):
    """Density of excitation energies per block at ``at`` (Gaussian kernel of width ``bw``, units 1/E*)."""
    sub = ex[:: max(1, ex.size // 8000)]
    scale = ex.size / sub.size
    out = np.empty(np.size(at))
    flat = np.ravel(at)
    for i in range(0, flat.size, 2000):
        z = (flat[i:i + 2000, None] - sub[None, :]) / bw
        out[i:i + 2000] = np.exp(-0.5 * z * z).sum(axis=1) * scale / (bw * np.sqrt(2 * np.pi) * samples)
    return out.reshape(np.shape(at))


def pair_counts(positions) -> np.ndarray:
    """Ordered-pair displacement counts C(d) of a site set, ``[2n0−1]³`` (index d + n0 − 1), C(0) = 0.

    Parameters
    ----------
    positions : array_like
        int [N, 3] lattice sites in [0, n0).

    Returns
    -------
    numpy.ndarray
        int64 counts of ordered pairs (s, t), s ≠ t, with r_s − r_t = d.
    """
    pos = np.asarray(positions, dtype=np.int64)
    n0 = int(pos.max()) + 1
    m = 2 * n0 - 1
    grid = np.zeros((2 * n0,) * 3)
    grid[pos[:, 0], pos[:, 1], pos[:, 2]] = 1.0
    f = np.fft.rfftn(grid)
    corr = np.fft.irfftn(f * np.conj(f), s=grid.shape, axes=(0, 1, 2))  # corr[d] = Σ_t ind(t + d) ind(t)
    counts = np.rint(np.roll(corr, n0 - 1, axis=(0, 1, 2))[:m, :m, :m]).astype(np.int64)
    counts[n0 - 1, n0 - 1, n0 - 1] = 0
    return counts


def lattice_sum(positions, cl_over_ct: float, table=None) -> np.ndarray:
    """S = Σ_{s≠t} Λ(r_s − r_t) over ordered pairs of the site set, 6×6 Mandel (ρ c_t² = 1, spacing 1).

    Parameters
    ----------
    positions : array_like
        int [N, 3] sites in [0, n0).
    cl_over_ct : float
        c_l/c_t.
    table : numpy.ndarray, optional
        :func:`blocksim.model.coupling.displacement_table` for this n0 (computed if omitted).

    Returns
    -------
    numpy.ndarray
        [6, 6].
    """
    counts = pair_counts(positions)
    n0 = (counts.shape[0] + 1) // 2
    tab = displacement_table(n0, cl_over_ct) if table is None else table
    return np.einsum("xyz,xyzab->ab", counts.astype(float), tab)


def lattice_sum_abs(positions, cl_over_ct: float, table=None) -> float:
    """Σ_{s≠t} ‖Λ(r_s − r_t)‖_F over ordered pairs (grows like N ln N0 for 1/r³)."""
    counts = pair_counts(positions)
    n0 = (counts.shape[0] + 1) // 2
    tab = displacement_table(n0, cl_over_ct) if table is None else table
    return float(np.einsum("xyz,xyz->", counts.astype(float), np.sqrt(np.sum(tab * tab, axis=(3, 4)))))


def predicted_tensors(moments: BlockMoments, s_sum, n_members: int) -> tuple[np.ndarray, np.ndarray]:
    """(δχ/g, χ_0) band tensors [6, 6] for a site set with lattice sum ``s_sum`` and N members.

    Parameters
    ----------
    moments : BlockMoments
        From :func:`single_block_moments`.
    s_sum : array_like
        [6, 6] signed lattice sum S (:func:`lattice_sum`).
    n_members : int
        N.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The first-order change per unit g and the g = 0 baseline (same sign convention: Σ u uᵀ L).
    """
    s = np.asarray(s_sum, dtype=float)
    proj = (BULK_PROJECTOR, DEVIATORIC_PROJECTOR)
    two_body = np.zeros((6, 6))
    for x in range(2):
        for y in range(2):
            two_body += moments.k[x, y] * (proj[x] @ s @ proj[y] + proj[y] @ s @ proj[x])
    two_body *= 2.0
    one_body = np.einsum("abc,c->ab", moments.d_bar, s @ moments.t0_bar)
    base = n_members * (moments.a[0] * BULK_PROJECTOR + moments.a[1] * DEVIATORIC_PROJECTOR)
    return two_body + one_body, base


def resonant_pair_estimate(moments: BlockMoments, positions, cl_over_ct: float, coupling_g: float, threshold: float,
                           rng: np.random.Generator, *, n_levels: int, draws: int = 64, table=None) -> float:
    """Expected number of resonant single–single pairs, Σ_{s<t} Σ_{m,m'} P(|V| > θ |E_m^s − E_m'^t|).

    V = 2g u_s·Λ^(st)·u_t with independently rotated members. For each displacement the probability
    is averaged over ``draws`` random (rotated) transition pairs with the empirical CDF of |ΔE| of the
    ensemble (amplitudes and levels taken as independent): P = ⟨F_|ΔE|(|V|/θ)⟩. Summed over the
    lattice with the pair counts, this is ∫ d³r P(|ΔE| < |V|/θ), which grows like Σ |Λ| ∝ ln N0.

    Parameters
    ----------
    moments : BlockMoments
        Sampled transitions (energies_ex, u_ex).
    positions : array_like
        int [N, 3] sites.
    cl_over_ct, coupling_g, threshold : float
        c_l/c_t, g, θ.
    rng : numpy.random.Generator
        Random stream for the draws.
    n_levels : int
        Levels n per member ((n − 1)² transition pairs per member pair).
    draws : int
        Transition pairs per displacement.
    table : numpy.ndarray, optional
        Displacement table.

    Returns
    -------
    float
        Expected number of unordered resonant pairs in the super block.
    """
    counts = pair_counts(positions)
    n0 = (counts.shape[0] + 1) // 2
    tab = displacement_table(n0, cl_over_ct) if table is None else table
    ex = moments.energies_ex
    m = ex.size
    i = rng.integers(0, m, size=(2, 20000))
    de = np.sort(np.abs(ex[i[0]] - ex[i[1]]))
    nz = np.nonzero(counts)
    lam = tab[nz]  # [P, 6, 6]
    c = counts[nz].astype(float)
    pick = rng.integers(0, m, size=(2, draws))
    rs = rotation_mandel(random_rotation(rng, 2 * draws))
    us = np.einsum("kab,kb->ka", rs[:draws], moments.u_ex[pick[0]])
    ut = np.einsum("kab,kb->ka", rs[draws:], moments.u_ex[pick[1]])
    v = 2.0 * coupling_g * np.abs(np.einsum("ka,pab,kb->pk", us, lam, ut))  # [P, draws]
    prob = np.searchsorted(de, v / threshold, side="right") / de.size
    return float(0.5 * np.sum(c * prob.mean(axis=1)) * (n_levels - 1) ** 2)



def normalization_excess(moments: BlockMoments, positions, cl_over_ct: float, rng: np.random.Generator, *,
                         n_levels: int, draws: int = 64, table=None) -> np.ndarray:
    """θ-slope of the excess band weight of unnormalized first-order amplitudes, per unit g: [6, 6].

    The perturbative solver's amplitude of |s,m⟩ is u + δ with δ ∋ (V/ΔE) u_t for every non-resonant partner
    (|ΔE| > |V|/θ) and no normalization factor, so |e·(u + δ)|² carries (V/ΔE)² (e·u_t)² on top of the exact
    weight (which a normalized state shares with its partner: the sum rule). Integrated over ΔE with the partner
    level density ρ(E) at E_m, ∫_{|ΔE|>|V|/θ} V²/ΔE² ρ dΔE = 2θ ρ(E_m) |V|: an O(g) excess, linear in θ, that
    grows like Σ|Λ| ∝ ln N0. This returns X with δχ_excess ≈ θ g X (same sign convention as
    :func:`predicted_tensors`, Σ u uᵀ L):

        X = 2 (n − 1) J Σ_{s≠t} ⟨|2 u_s·Λ^(st)·u_t| u_t u_tᵀ⟩,   J = ⟨Σ_m L(E_m) ρ(E_m)⟩,

    averaged over ``draws`` independently rotated transition pairs per displacement (amplitudes and levels
    taken as independent; ρ from a Gaussian kernel of width 0.02 E*, :attr:`BlockMoments.j_band`).

    Parameters
    ----------
    moments : BlockMoments
        Sampled transitions and the band (moments.a fixes nothing here; L is recomputed by the caller's band).
    positions : array_like
        int [N, 3] sites.
    cl_over_ct : float
        c_l/c_t.
    rng : numpy.random.Generator
        Random stream for the draws.
    n_levels : int
        Levels n per member (n − 1 partner transitions per member).
    draws : int
        Transition pairs per displacement.
    table : numpy.ndarray, optional
        Displacement table.

    Returns
    -------
    numpy.ndarray
        [6, 6], per unit g and unit θ.
    """
    counts = pair_counts(positions)
    n0 = (counts.shape[0] + 1) // 2
    tab = displacement_table(n0, cl_over_ct) if table is None else table
    nz = np.nonzero(counts)
    lam = tab[nz]
    c = counts[nz].astype(float)
    m = moments.u_ex.shape[0]
    pick = rng.integers(0, m, size=(2, draws))
    rs = rotation_mandel(random_rotation(rng, 2 * draws))
    us = np.einsum("kab,kb->ka", rs[:draws], moments.u_ex[pick[0]])
    ut = np.einsum("kab,kb->ka", rs[draws:], moments.u_ex[pick[1]])
    v = 2.0 * np.abs(np.einsum("ka,pab,kb->pk", us, lam, ut))  # [P, draws] per unit g
    weight = np.einsum("p,pk->k", c, v)  # Σ_{s≠t} |V|/g for each draw
    x = np.einsum("k,ka,kb->ab", weight, ut, ut) / draws
    return 2.0 * (n_levels - 1) * moments.j_band * x
