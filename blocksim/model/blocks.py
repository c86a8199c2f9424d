"""Random block ensembles: generic n-level blocks, TTLS-product blocks and GOE blocks.

A block (BRIEF §1.1, DESIGN "Array contracts") is a pair of arrays

* ``energies`` float64 ``[n]`` — ascending, ground state at exactly 0, in units of E*;
* ``stress`` float64 ``[6, n, n]`` — the Mandel components ``T_a`` (order xx, yy, zz, √2·yz, √2·xz,
  √2·xy) of the stress operator of Eq. (2.5) of [ZL], each a real symmetric matrix in the block's
  energy eigenbasis, in units of T*.

A pool of P blocks is ``[P, n]`` and ``[P, 6, n, n]``. Every function takes an explicit
``numpy.random.Generator``.

Stress ensemble (DESIGN, modelling choice 1)
--------------------------------------------
``T = A_b·x_0·(I/√3) + A_s·Σ_{k=1..5} x_k·B_k`` with ``I/√3`` the unit bulk Mandel vector, ``B_k`` an
orthonormal deviatoric Mandel basis (:data:`ISOTROPIC_BASIS`) and ``x_k`` independent random real
symmetric matrices (TTLS: a random scalar times the TTLS 2×2 matrix). With ⟨x_k x_k'⟩ ∝ δ_kk' the
ensemble response is isotropic with ⟨χ_l⟩/⟨χ_t⟩ = 4/3 + (2/3)(A_b/A_s)², so a requested bare ratio
``mb_bare`` = R = γ_l/γ_t fixes ``(A_b/A_s)² = (3R² − 4)/2`` (R ≥ √(4/3), BRIEF §1b).
Normalisation: **A_s = 1**, so for a unit-variance scalar x_k the transverse strain
``e_t = (qp + pq)/2`` sees ``⟨(e_t·T)²⟩ = ‖e_t‖² = 1/2`` per unit variance of x (in units of T*²),
whatever ``mb_bare`` is.
"""

from __future__ import annotations

import numba
import numpy as np

from ..choices import BLOCK_KINDS, LEVEL_DISTRIBUTIONS, SQRT_FOUR_THIRDS
from ..errors import InputError, suggest
from .tensors import rotation_mandel

__all__ = [
    "ISOTROPIC_BASIS",
    "LEVEL_DISTRIBUTIONS",
    "BLOCK_KINDS",
    "isotropic_amplitudes",
    "random_isotropic_tensor",
    "random_symmetric_matrices",
    "ttls_parameters",
    "generic_blocks",
    "ttls_blocks",
    "goe_blocks",
    "make_blocks",
    "make_blocks_then",
    "rotate_blocks",
]


#: Orthonormal Mandel basis ``[6, 6]``: row 0 is the bulk direction I/√3, rows 1..5 the deviatoric
#: basis B_1..B_5 (diag(1,−1,0)/√2, diag(1,1,−2)/√6 and the three unit shear components yz, xz, xy).
ISOTROPIC_BASIS = np.array(
    [
        [1.0, 1.0, 1.0, 0.0, 0.0, 0.0] / np.sqrt(3.0),
        [1.0, -1.0, 0.0, 0.0, 0.0, 0.0] / np.sqrt(2.0),
        [1.0, 1.0, -2.0, 0.0, 0.0, 0.0] / np.sqrt(6.0),
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)



# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _finite(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} = {value!r}: must be a finite number") from None
    if not np.isfinite(x):
        raise InputError(f"{name} = {value!r}: must be a finite number")
    return x


def _positive(name: str, value) -> float:
    x = _finite(name, value)
    if not x > 0:
        raise InputError(f"{name} = {value!r}: must be a finite number > 0")
    return x


def _integer(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise InputError(f"{name} = {value!r}: must be an integer ≥ {minimum}")
    if value < minimum:
        raise InputError(f"{name} = {value!r}: must be an integer ≥ {minimum}")
    return int(value)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng = {rng!r}: must be a numpy.random.Generator (numpy.random.default_rng(seed))")
    return rng


# --------------------------------------------------------------------------------------------
# Isotropic stress draws
# --------------------------------------------------------------------------------------------
def isotropic_amplitudes(mb_bare: float) -> tuple[float, float]:
    """Bulk and shear amplitudes ``(A_b, A_s)`` of the isotropic stress ensemble for ``mb_bare`` = γ_l/γ_t.

    ``⟨χ_l⟩/⟨χ_t⟩ = 4/3 + (2/3)(A_b/A_s)² = R²`` gives ``A_b = A_s·sqrt((3R² − 4)/2)`` with the
    normalisation ``A_s = 1`` (dimensionless multipliers of the random matrices, which carry units of T*).
    ``R = sqrt(4/3)`` is the pure-shear ensemble (A_b = 0). R < sqrt(4/3) or non-finite → InputError.
    """
    try:
        r = float(mb_bare)
    except (TypeError, ValueError):
        raise InputError(f"mb_bare = {mb_bare!r}: must be a finite number ≥ sqrt(4/3) ≈ 1.1547") from None
    # a tiny tolerance lets mb_bare = sqrt(4/3) computed in floating point through
    if not np.isfinite(r) or r < SQRT_FOUR_THIRDS * (1.0 - 1e-12):
        raise InputError(
            f"mb_bare = {mb_bare!r}: must be a finite number ≥ sqrt(4/3) ≈ 1.1547 "
            "(γ_l/γ_t of any isotropic stress ensemble)"
        )
    a_s = 1.0
    a_b = a_s * np.sqrt(max(0.0, (3.0 * r * r - 4.0) / 2.0))
    return float(a_b), float(a_s)


def _component_weights(mb_bare: float) -> np.ndarray:
    """``C[k, a]`` with ``T_a = Σ_k C[k, a] x_k``: the basis rows scaled by (A_b, A_s, …, A_s)."""
    a_b, a_s = isotropic_amplitudes(mb_bare)
    scale = np.array([a_b, a_s, a_s, a_s, a_s, a_s])
    return scale[:, None] * ISOTROPIC_BASIS


def random_isotropic_tensor(rng: np.random.Generator, size: int, mb_bare: float) -> np.ndarray:
    """Random Mandel 6-vectors ``[size, 6]`` from the isotropic ensemble, ``t = Σ_k C_k x_k``, x_k ~ N(0, 1).

    ``⟨t_a t_b⟩ = A_b² J_ab + A_s² K_ab`` with J the bulk and K the deviatoric projector, so
    ``⟨(e_l·t)²⟩/⟨(e_t·t)²⟩ = mb_bare²`` for any propagation direction. Dimensionless (A_s = 1).
    """
    _check_rng(rng)
    size = _integer("size", size, 1)
    x = rng.standard_normal((size, 6))
    return x @ _component_weights(mb_bare)


def random_symmetric_matrices(rng: np.random.Generator, shape: tuple, n: int) -> np.ndarray:
    """GOE-normalised random real symmetric matrices ``[*shape, n, n]``: ``x = (a + aᵀ)/√2``, a_ij ~ N(0, 1).

    Off-diagonal entries have variance 1, diagonal entries variance 2 (the orthogonally invariant
    Gaussian orthogonal ensemble).
    """
    return _goe_from_normals(rng.standard_normal(tuple(shape) + (n, n)))


def _goe_from_normals(a: np.ndarray) -> np.ndarray:
    """(a + aᵀ)/√2 over the last two axes: :func:`random_symmetric_matrices` from its normal draws."""
    return (a + np.swapaxes(a, -1, -2)) / np.sqrt(2.0)


# --------------------------------------------------------------------------------------------
# Level distributions
# --------------------------------------------------------------------------------------------
def _wigner_spacings(rng, shape) -> np.ndarray:
    """GOE Wigner-surmise spacings, P(s) = (π s/2) exp(−π s²/4), mean 1 (inverse CDF)."""
    u = rng.random(shape)
    return np.sqrt(-4.0 * np.log1p(-u) / np.pi)


def _excited_levels(rng, count: int, n: int, distribution: str, level_scale: float) -> np.ndarray:
    """``[count, n−1]`` excited levels (unsorted for iid draws, increasing for spacing sequences)."""
    shape = (count, n - 1)
    if distribution == "uniform":
        return level_scale * (1.0 - rng.random(shape))  # uniform on (0, level_scale]
    if distribution == "exponential":
        return rng.exponential(level_scale, shape)
    if distribution == "poisson":
        return np.cumsum(rng.exponential(level_scale, shape), axis=1)
    if distribution == "wigner":
        return np.cumsum(level_scale * _wigner_spacings(rng, shape), axis=1)
    raise InputError(
        f"level_distribution = {distribution!r}: must be one of {', '.join(LEVEL_DISTRIBUTIONS)}"
        + suggest(str(distribution), LEVEL_DISTRIBUTIONS)
    )


# --------------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------------
def generic_blocks(
    rng: np.random.Generator,
    count: int,
    n: int,
    *,
    level_distribution: str = "uniform",
    level_scale: float = 1.0,
    mb_bare: float = 1.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Generic n-level blocks: ``(energies [count, n], stress [count, 6, n, n])``.

    Levels (units of E*; ground exactly 0, then the n−1 excited levels sorted ascending):

    * ``"uniform"``: n−1 iid levels uniform on (0, level_scale];
    * ``"exponential"``: n−1 iid levels with density e^{−E/level_scale}/level_scale;
    * ``"poisson"``: uncorrelated (Poisson) spectrum, E_m = Σ_{j≤m} s_j with iid exponential spacings
      of mean level_scale;
    * ``"wigner"``: E_m = Σ_{j≤m} s_j with iid Wigner-surmise spacings P(s) = (π s/2)e^{−πs²/4}
      (GOE-like level repulsion between neighbours only), mean spacing level_scale.

    Stress: ``T_a = Σ_k C[k, a] x_k`` with six independent GOE matrices x_k
    (:func:`random_symmetric_matrices`) and the isotropic weights of :func:`isotropic_amplitudes`.
    The GOE law is permutation invariant, so no reordering is needed after sorting the levels.
    """
    _check_rng(rng)
    count = _integer("count", count, 1)
    n = _integer("n", n, 2)
    level_scale = _positive("level_scale", level_scale)
    if level_distribution not in LEVEL_DISTRIBUTIONS:
        raise InputError(
            f"level_distribution = {level_distribution!r}: must be one of {', '.join(LEVEL_DISTRIBUTIONS)}"
            + suggest(str(level_distribution), LEVEL_DISTRIBUTIONS)
        )
    isotropic_amplitudes(mb_bare)  # validate before drawing
    return _generic_from_draws(*_generic_draws(rng, count, n, level_distribution, level_scale), mb_bare)


def _generic_draws(rng, count: int, n: int, level_distribution: str, level_scale: float):
    """The random numbers of :func:`generic_blocks`, in its order: raw excited levels, then the normals."""
    excited = _excited_levels(rng, count, n, level_distribution, level_scale)
    return excited, rng.standard_normal((count, 6, n, n))


def _generic_from_draws(excited, normals, mb_bare: float):
    """:func:`generic_blocks` from its draws (row by row: the draws of several generators may be stacked)."""
    excited = np.sort(excited, axis=1)
    energies = np.concatenate([np.zeros((excited.shape[0], 1)), excited], axis=1)
    # T_a = Σ_k C[k, a] x_k with six independent GOE matrices x_k = (a_k + a_kᵀ)/√2 per block
    stress = np.empty(normals.shape)
    _isotropic_combination(_component_weights(mb_bare), np.ascontiguousarray(normals), stress)
    return energies, stress


@numba.njit(cache=True, nogil=True)
def _isotropic_combination(weights, normals, out):
    """out[p, a] = Σ_k weights[k, a]·(normals[p, k] + normals[p, k]ᵀ)/√2, summed over k in order
    (element for element ``np.einsum("ka,pkmn->pamn", weights, _goe_from_normals(normals))``; tests/test_blocks.py)."""
    r2 = np.sqrt(2.0)
    n_k, n = normals.shape[1], normals.shape[2]
    x = np.empty((n_k, n * n))
    acc = np.empty(n * n)
    for p in range(normals.shape[0]):
        for k in range(n_k):
            for i in range(n):
                for j in range(n):
                    x[k, i * n + j] = (normals[p, k, i, j] + normals[p, k, j, i]) / r2
        for a in range(weights.shape[1]):
            acc[:] = 0.0
            for k in range(n_k):  # each element summed over k in order, all elements at once
                f = weights[k, a]
                for ij in range(n * n):
                    acc[ij] += f * x[k, ij]
            for i in range(n):
                for j in range(n):
                    out[p, a, i, j] = acc[i * n + j]


def make_blocks_then(rngs, count: int, spec: dict, then) -> tuple[np.ndarray, np.ndarray, list]:
    """:func:`make_blocks` of ``count`` blocks from each generator of ``rngs``, concatenated, and
    ``then(rng)`` on each generator right after its blocks (further draws from the same stream).

    Returns ``(energies, stress, [then(rng) for rng in rngs])``, the same numbers as the calls one
    generator at a time. For generic blocks the draws are made per generator and turned into blocks
    in one pass (tests/test_blocks.py); other kinds call :func:`make_blocks` per generator.
    """
    rngs = list(rngs)
    if spec.get("kind") != "generic" or not rngs:
        parts = [make_blocks(rng, count, spec) + (then(rng),) for rng in rngs]
        return (np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts]),
                [x[2] for x in parts])
    e, t = make_blocks(rngs[0], count, spec)  # validates the spec and draws the first generator's blocks
    after = [then(rngs[0])]
    opts = {**generic_blocks.__kwdefaults__, **{k: v for k, v in spec.items() if k not in ("kind", "n")}}
    levels, normals = [], []
    for rng in rngs[1:]:
        lv, nv = _generic_draws(rng, count, spec["n"], opts["level_distribution"], opts["level_scale"])
        levels.append(lv)
        normals.append(nv)
        after.append(then(rng))
    if levels:
        e_rest, t_rest = _generic_from_draws(np.concatenate(levels), np.concatenate(normals), opts["mb_bare"])
        e, t = np.concatenate([e, e_rest]), np.concatenate([t, t_rest])
    return e, t, after


def ttls_parameters(
    rng: np.random.Generator, size, *, delta_max: float, delta0_min: float, delta0_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """TTLS asymmetries Δ and tunnelling splittings Δ0 (units of E*), arrays of shape ``size``.

    Δ is uniform on [−Δ_max, Δ_max]; Δ0 has P(Δ0) ∝ 1/Δ0 on [Δ0_min, Δ0_max] (log-uniform), the
    standard TTLS distribution P(Δ, Δ0) ∝ 1/Δ0 behind Eq. (2.1) of [ZL].
    """
    _check_rng(rng)
    delta_max = _finite("delta_max", delta_max)
    if delta_max < 0:
        raise InputError(f"delta_max = {delta_max!r}: must be a finite number ≥ 0")
    delta0_min = _positive("delta0_min", delta0_min)
    delta0_max = _finite("delta0_max", delta0_max)
    if not delta0_max > delta0_min:
        raise InputError(f"delta0_max = {delta0_max!r}: must be a finite number > delta0_min = {delta0_min!r}")
    delta = rng.uniform(-delta_max, delta_max, size)
    log_lo, log_hi = np.log(delta0_min), np.log(delta0_max)
    delta0 = np.exp(rng.uniform(log_lo, log_hi, size))
    return delta, delta0


def ttls_blocks(
    rng: np.random.Generator,
    count: int,
    k: int,
    *,
    delta_max: float = 1.0,
    delta0_min: float = 1e-3,
    delta0_max: float = 1.0,
    gamma: float = 1.0,
    mb_bare: float = 1.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of k independent TTLS, n = 2^k: ``(energies [count, 2^k], stress [count, 6, 2^k, 2^k])``.

    Each TTLS i has (Δ_i, Δ0_i) from :func:`ttls_parameters`, splitting ``E_i = sqrt(Δ_i² + Δ0_i²)``
    and, in its energy eigenbasis ordered **(lower, upper)**, the stress operator

        ``T_a^(i) = t_{i,a} · (γ/2) [[−D_i, M_i], [M_i, D_i]]``,   D_i = Δ_i/E_i, M_i = Δ0_i/E_i,

    with ``t_i`` an independent isotropic Mandel 6-vector (:func:`random_isotropic_tensor`). This is
    Eq. (2.1) of [ZL], whose matrices are written in the order (upper, lower) — H = ½diag(E, −E) and
    coupling (γ/2)[[D, M], [M, −D]] — reordered ground-first. Sign convention: the eigenvector phases
    are chosen so that the off-diagonal element is +γM/2 (M > 0), i.e. the localized-basis
    Hamiltonian ½(Δσ_z + Δ0σ_x) with coupling (γ/2)σ_z, Δ0 > 0.

    The block Hamiltonian is Σ_i H_i. Product state m has bits b_i(m) (bit i of m, 1 = TTLS i
    excited) and energy E_m = Σ_i b_i(m) E_i (ground shifted to 0). The stress is Σ_i T^(i) ⊗ 1:
    diagonal ⟨m|T_a|m⟩ = Σ_i t_{i,a}(γ/2)(2b_i − 1)D_i and ⟨m|T_a|m ⊕ 2^i⟩ = t_{i,a}(γ/2)M_i. The
    states are then sorted by energy (stable sort) and the stress rows and columns permuted alike.
    γ is in units of T*; Δ, Δ0 in units of E*.
    """
    _check_rng(rng)
    count = _integer("count", count, 1)
    k = _integer("k", k, 1)
    if k > 12:
        raise InputError(f"k = {k}: must be an integer between 1 and 12 (n = 2^k levels)")
    gamma = _positive("gamma", gamma)
    isotropic_amplitudes(mb_bare)
    delta, delta0 = ttls_parameters(
        rng, (count, k), delta_max=delta_max, delta0_min=delta0_min, delta0_max=delta0_max
    )
    e_ttls = np.hypot(delta, delta0)  # [count, k]
    d = delta / e_ttls
    m_el = delta0 / e_ttls
    t = random_isotropic_tensor(rng, count * k, mb_bare).reshape(count, k, 6)

    n = 2**k
    states = np.arange(n)
    bits = (states[:, None] >> np.arange(k)[None, :]) & 1  # [n, k]
    energies = bits @ e_ttls.T  # [n, count]
    energies = energies.T  # [count, n]
    stress = np.zeros((count, 6, n, n))
    sign = 2.0 * bits - 1.0  # [n, k]
    diag = 0.5 * gamma * np.einsum("mi,pi,pia->pam", sign, d, t)  # [count, 6, n]
    stress[:, :, states, states] = diag
    for i in range(k):
        partner = states ^ (1 << i)
        stress[:, :, states, partner] += (0.5 * gamma * m_el[:, i])[:, None, None] * t[:, i, :, None]

    order = np.argsort(energies, axis=1, kind="stable")
    energies = np.take_along_axis(energies, order, axis=1)
    energies -= energies[:, :1]
    rows = order[:, None, :, None]
    cols = order[:, None, None, :]
    stress = stress[np.arange(count)[:, None, None, None], np.arange(6)[None, :, None, None], rows, cols]
    return energies, stress


def goe_blocks(
    rng: np.random.Generator, count: int, n: int, *, level_scale: float = 1.0, mb_bare: float = 1.6
) -> tuple[np.ndarray, np.ndarray]:
    """Random-matrix blocks: ``(energies [count, n], stress [count, 6, n, n])``.

    H is drawn from the GOE (:func:`random_symmetric_matrices`) and diagonalized, H = U diag(ε) Uᵀ.
    Energies are ``(ε − ε_0)·level_scale/δ̄`` with the block's own mean spacing δ̄ = (ε_{n−1} − ε_0)/(n−1),
    so every block has mean level spacing exactly ``level_scale`` (units of E*). Stress components
    are six independent GOE matrices x_k (drawn in the original basis) transformed into the
    eigenbasis, ``Uᵀ x_k U``, and weighted isotropically (:func:`isotropic_amplitudes`).
    """
    _check_rng(rng)
    count = _integer("count", count, 1)
    n = _integer("n", n, 2)
    level_scale = _positive("level_scale", level_scale)
    isotropic_amplitudes(mb_bare)
    h = random_symmetric_matrices(rng, (count,), n)
    eps, u = np.linalg.eigh(h)
    eps = eps - eps[:, :1]
    spacing = eps[:, -1] / (n - 1)
    energies = eps * (level_scale / spacing)[:, None]
    energies[:, 0] = 0.0
    x = random_symmetric_matrices(rng, (count, 6), n)
    x = np.einsum("pji,pkjl,plm->pkim", u, x, u)  # Uᵀ x U
    x = 0.5 * (x + np.swapaxes(x, -1, -2))  # exactly symmetric (removes rounding asymmetry)
    stress = np.einsum("ka,pkmn->pamn", _component_weights(mb_bare), x)
    return energies, stress


_FACTORIES = {"generic": generic_blocks, "ttls": ttls_blocks, "goe": goe_blocks}


def make_blocks(rng: np.random.Generator, count: int, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` blocks from ``spec = {"kind": "generic" | "ttls" | "goe", **kwargs}``.

    The other keys are the keyword arguments of :func:`generic_blocks` (n, level_distribution,
    level_scale, mb_bare), :func:`ttls_blocks` (k, delta_max, delta0_min, delta0_max, gamma,
    mb_bare) or :func:`goe_blocks` (n, level_scale, mb_bare). Unknown kinds or keys raise
    InputError with the nearest valid name.
    """
    if not isinstance(spec, dict):
        raise InputError(f"spec = {spec!r}: must be a dict with a 'kind' key")
    if "kind" not in spec:
        raise InputError(f"spec = {spec!r}: missing key 'kind' (one of {', '.join(BLOCK_KINDS)})")
    kind = spec["kind"]
    if kind not in BLOCK_KINDS:
        raise InputError(
            f"kind = {kind!r}: must be one of {', '.join(BLOCK_KINDS)}" + suggest(str(kind), BLOCK_KINDS)
        )
    kwargs = {key: value for key, value in spec.items() if key != "kind"}
    valid = BLOCK_KINDS[kind]
    for key in kwargs:
        if key not in valid:
            raise InputError(
                f"{key} = {kwargs[key]!r}: unknown key for kind {kind!r} (valid: {', '.join(valid)})"
                + suggest(str(key), valid)
            )
    size_key = "k" if kind == "ttls" else "n"
    if size_key not in kwargs:
        raise InputError(f"spec = {spec!r}: missing key {size_key!r} for kind {kind!r}")
    size = kwargs.pop(size_key)
    return _FACTORIES[kind](rng, count, size, **kwargs)


def rotate_blocks(stress: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Rotate block stress tensors: ``T'_a = Σ_b Q_ab(R) T_b`` with Q = :func:`tensors.rotation_mandel`.

    ``stress`` ``[P, 6, n, n]`` with ``rotations`` ``[P, 3, 3]`` (one rotation per block), or a single
    block ``[6, n, n]`` with ``[3, 3]``. The rotated tensor is R T Rᵀ (active rotation). Energies
    are unchanged.
    """
    stress = np.asarray(stress, dtype=float)
    rotations = np.asarray(rotations, dtype=float)
    if stress.ndim == 3 and rotations.shape == (3, 3):
        return np.einsum("ab,bmn->amn", rotation_mandel(rotations), stress)
    if stress.ndim != 4 or stress.shape[1] != 6 or rotations.shape != (stress.shape[0], 3, 3):
        raise InputError(
            f"rotations shape = {rotations.shape}: must be [P, 3, 3] matching stress [P, 6, n, n] "
            f"(got stress shape {stress.shape})"
        )
    return np.einsum("pab,pbmn->pamn", rotation_mandel(rotations), stress)
