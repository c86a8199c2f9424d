"""Symmetric tensors in Mandel notation, rotations and isotropic projections.

Conventions (BRIEF §2)
----------------------
A symmetric 3×3 tensor ``T`` is stored as the Mandel (orthonormal Voigt) 6-vector

    (T_xx, T_yy, T_zz, √2·T_yz, √2·T_xz, √2·T_xy),

so that the double contraction ``T:e = Σ_ij T_ij e_ij`` equals the dot product of the two 6-vectors.
A 4-index tensor ``C_ijkl`` with the minor symmetries ``C_ijkl = C_jikl = C_ijlk`` becomes the 6×6
matrix ``C_ab = w_a w_b C_{ij(a) kl(b)}`` with ``w = (1, 1, 1, √2, √2, √2)``; then
``Σ_ijkl C_ijkl T_ij T'_kl = Σ_ab C_ab T_a T'_b``.

A rotation ``R`` acts on a symmetric tensor as ``T → R T Rᵀ``. In Mandel form this is an orthogonal
6×6 matrix ``Q(R)`` with ``mandel(R T Rᵀ) = Q(R) · mandel(T)``, and ``Q(R1 R2) = Q(R1) Q(R2)``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = [
    "MANDEL_INDEX",
    "MANDEL_WEIGHT",
    "to_mandel",
    "from_mandel",
    "to_mandel4",
    "from_mandel4",
    "rotation_mandel",
    "random_rotation",
    "rotations_from_normals",
    "cubic_rotations",
    "direction_strains",
    "parse_direction",
    "direction_vectors",
    "BULK_PROJECTOR",
    "DEVIATORIC_PROJECTOR",
    "powder_lt",
    "isotropic_projection",
    "isotropic_tensor",
    "symmetrize4",
]

#: (i, j) Cartesian index pair of each Mandel component, in the order xx, yy, zz, yz, xz, xy.
MANDEL_INDEX = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: Weight w_a of each Mandel component: 1 on the diagonal, √2 off it.
MANDEL_WEIGHT = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])

_I = np.array([p[0] for p in MANDEL_INDEX])
_J = np.array([p[1] for p in MANDEL_INDEX])

#: Isotropic projectors on Mandel 6×6 matrices: J = (1/3) δ_ij δ_kl (bulk, ‖J‖² = 1) and
#: K = I6 − J (deviatoric, ‖K‖² = 5). They span the isotropic tensors of Eq. (2.12) of [ZL].
BULK_PROJECTOR = np.zeros((6, 6))
BULK_PROJECTOR[:3, :3] = 1.0 / 3.0
DEVIATORIC_PROJECTOR = np.eye(6) - BULK_PROJECTOR


def to_mandel(t: np.ndarray) -> np.ndarray:
    """Symmetric tensor(s) ``[..., 3, 3]`` → Mandel vector(s) ``[..., 6]``.

    The symmetric part ``(t + tᵀ)/2`` is used, so an asymmetric input is symmetrized.
    """
    t = np.asarray(t, dtype=float)
    sym = 0.5 * (t + np.swapaxes(t, -1, -2))
    return sym[..., _I, _J] * MANDEL_WEIGHT


def from_mandel(v: np.ndarray) -> np.ndarray:
    """Mandel vector(s) ``[..., 6]`` → symmetric tensor(s) ``[..., 3, 3]``."""
    v = np.asarray(v, dtype=float)
    comp = v / MANDEL_WEIGHT
    out = np.empty(v.shape[:-1] + (3, 3))
    for a, (i, j) in enumerate(MANDEL_INDEX):
        out[..., i, j] = comp[..., a]
        out[..., j, i] = comp[..., a]
    return out


def symmetrize4(c: np.ndarray) -> np.ndarray:
    """Project ``c_ijkl`` onto the minor symmetries ``(ij)`` and ``(kl)`` (not the major one)."""
    c = np.asarray(c, dtype=float)
    c = 0.5 * (c + np.swapaxes(c, -4, -3))
    return 0.5 * (c + np.swapaxes(c, -2, -1))


def to_mandel4(c: np.ndarray) -> np.ndarray:
    """4-index tensor(s) ``[..., 3, 3, 3, 3]`` → 6×6 Mandel matrices ``[..., 6, 6]``.

    The tensor is first projected onto its minor symmetries (:func:`symmetrize4`).
    """
    c = symmetrize4(c)
    sub = c[..., _I[:, None], _J[:, None], _I[None, :], _J[None, :]]
    return sub * np.outer(MANDEL_WEIGHT, MANDEL_WEIGHT)


def from_mandel4(m: np.ndarray) -> np.ndarray:
    """6×6 Mandel matrices ``[..., 6, 6]`` → 4-index tensors with minor symmetries ``[..., 3,3,3,3]``."""
    m = np.asarray(m, dtype=float)
    comp = m / np.outer(MANDEL_WEIGHT, MANDEL_WEIGHT)
    out = np.empty(m.shape[:-2] + (3, 3, 3, 3))
    for a, (i, j) in enumerate(MANDEL_INDEX):
        for b, (k, l) in enumerate(MANDEL_INDEX):
            val = comp[..., a, b]
            out[..., i, j, k, l] = val
            out[..., j, i, k, l] = val
            out[..., i, j, l, k] = val
            out[..., j, i, l, k] = val
    return out


def rotation_mandel(r: np.ndarray) -> np.ndarray:
    """Orthogonal 6×6 representation ``Q(R)`` of rotation(s) ``R`` ``[..., 3, 3]`` on Mandel vectors.

    ``Q_ab = w_a w_b / 2 · (R_ik R_jl + R_il R_jk)`` with ``(i, j) = a`` and ``(k, l) = b``
    (divided by 2 once more when ``k = l``, because a diagonal pair appears once), so that
    ``mandel(R T Rᵀ) = Q · mandel(T)``.
    """
    r = np.asarray(r, dtype=float)
    ri = r[..., _I[:, None], _I[None, :]]  # R_{i(a) k(b)}
    rj = r[..., _J[:, None], _J[None, :]]  # R_{j(a) l(b)}
    ril = r[..., _I[:, None], _J[None, :]]  # R_{i(a) l(b)}
    rjk = r[..., _J[:, None], _I[None, :]]  # R_{j(a) k(b)}
    q = ri * rj + ril * rjk
    diag_b = (_I == _J)[None, :]
    q = np.where(diag_b, 0.5 * q, q)
    return q * np.outer(MANDEL_WEIGHT, 1.0 / MANDEL_WEIGHT)


def random_rotation(rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    """Haar-uniform random rotation(s) in SO(3), from normalized random unit quaternions.

    Returns an array ``[3, 3]`` (``size=None``) or ``[size, 3, 3]``.
    """
    n = 1 if size is None else int(size)
    r = rotations_from_normals(rng.standard_normal((n, 4)))
    return r[0] if size is None else r


def rotations_from_normals(q: np.ndarray) -> np.ndarray:
    """The rotations ``[N, 3, 3]`` of :func:`random_rotation` from its standard normal draws ``q [N, 4]``.

    Row by row, so the rotations of several generators' draws can be made in one call (tree chunks).
    """
    n = q.shape[0]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    r = np.empty((n, 3, 3))
    r[:, 0, 0] = 1 - 2 * (y * y + z * z)
    r[:, 0, 1] = 2 * (x * y - z * w)
    r[:, 0, 2] = 2 * (x * z + y * w)
    r[:, 1, 0] = 2 * (x * y + z * w)
    r[:, 1, 1] = 1 - 2 * (x * x + z * z)
    r[:, 1, 2] = 2 * (y * z - x * w)
    r[:, 2, 0] = 2 * (x * z - y * w)
    r[:, 2, 1] = 2 * (y * z + x * w)
    r[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return r


def cubic_rotations() -> np.ndarray:
    """The 24 proper rotations of the cube (signed permutation matrices with det = +1), ``[24, 3, 3]``."""
    import itertools

    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for row, (col, sgn) in enumerate(zip(perm, signs)):
                m[row, col] = sgn
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.array(mats)


def direction_strains(q, p=None) -> tuple[np.ndarray, np.ndarray]:
    """Mandel strain vectors of a longitudinal and a transverse wave (χ_l, χ_t of Eq. 2.12 of [ZL]).

    The wave propagates along unit vector ``q`` with transverse polarization ``p ⊥ q``. The
    longitudinal strain is ``e_l = q⊗q`` and the transverse one ``e_t = (q⊗p + p⊗q)/2``, so that
    ``e_l·C·e_l = C_qqqq = χ_l`` and ``e_t·C·e_t = C_qpqp = χ_t`` (BRIEF §1.4; for q = z, p = x these
    are χ_zzzz and χ_xzxz). If ``p`` is omitted a fixed perpendicular vector is chosen; a given ``p`` is
    projected perpendicular to ``q``. A zero ``q`` or a ``p`` parallel to ``q`` raises InputError.
    """
    q = np.asarray(q, dtype=float)
    if q.shape != (3,) or not np.all(np.isfinite(q)) or not np.linalg.norm(q) > 0:
        raise InputError(f"q = {q.tolist()}: must be a finite non-zero 3-vector")
    q = q / np.linalg.norm(q)
    if p is None:
        trial = np.array([1.0, 0.0, 0.0]) if abs(q[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        p = trial - q * (trial @ q)
    p_in = np.asarray(p, dtype=float)
    if p_in.shape != (3,) or not np.all(np.isfinite(p_in)):
        raise InputError(f"p = {p_in.tolist()}: must be a finite 3-vector")
    p = p_in - q * (p_in @ q)
    if not np.linalg.norm(p) > 1e-12 * np.linalg.norm(p_in):
        raise InputError(f"p = {p_in.tolist()}: must not be parallel to q = {q.tolist()}")
    p = p / np.linalg.norm(p)
    e_l = to_mandel(np.outer(q, q))
    e_t = to_mandel(0.5 * (np.outer(q, p) + np.outer(p, q)))
    return e_l, e_t


def isotropic_tensor(chi_l: float, chi_t: float) -> np.ndarray:
    """Isotropic 4-index tensor of Eq. (2.12) as a 6×6 Mandel matrix.

    ``C_ijkl = (χ_l − 2χ_t) δ_ij δ_kl + χ_t (δ_ik δ_jl + δ_il δ_jk)``.
    """
    m = np.zeros((6, 6))
    m[:3, :3] = chi_l - 2.0 * chi_t
    m += 2.0 * chi_t * np.eye(6)
    return m


def powder_lt(tensor):
    """Powder-averaged (χ_l, χ_t) of Mandel tensors: the one implementation of the orientation average.

    Parameters
    ----------
    tensor : array_like [..., 6, 6]
        Mandel matrices C_ab (any units; e.g. Im χ in T*²/E*).

    Returns
    -------
    chi_l, chi_t : ndarray [...]
        The averages of e_l·C·e_l and e_t·C·e_t over all propagation directions (and transverse
        polarizations), in the units of ``tensor``. They equal the isotropic projection of C
        (Eq. 2.12 of [ZL]): a = Σ J∘C, b = Σ K∘C / 5, χ_t = b/2, χ_l = a/3 + 2b/3 with J, K the
        :data:`BULK_PROJECTOR` and :data:`DEVIATORIC_PROJECTOR`.
    """
    c = np.asarray(tensor, dtype=float)
    a = np.einsum("...ab,ab->...", c, BULK_PROJECTOR)
    b = np.einsum("...ab,ab->...", c, DEVIATORIC_PROJECTOR) / 5.0
    return a / 3.0 + 2.0 * b / 3.0, 0.5 * b


def isotropic_projection(c: np.ndarray) -> tuple[float, float, float]:
    """Least-squares isotropic fit of a 4-index tensor (Eq. 2.12 of [ZL]) and its residual.

    Parameters
    ----------
    c : array_like [3, 3, 3, 3] or [6, 6]
        The tensor, or its Mandel matrix.

    Returns
    -------
    chi_l, chi_t : float
        The fit: the powder average :func:`powder_lt` of the symmetrized Mandel matrix.
    residual : float
        ``‖C − C_iso‖ / ‖C‖`` of the orthogonal projection onto the span of ``δ_ij δ_kl`` and
        ``δ_ik δ_jl + δ_il δ_jk`` (Frobenius = Mandel inner product); 0 for an isotropic tensor and
        for ``C = 0``.
    """
    c = np.asarray(c, dtype=float)
    m = to_mandel4(c) if c.shape == (3, 3, 3, 3) else c
    m = 0.5 * (m + m.T)
    chi_l, chi_t = powder_lt(m)
    # iso = a_bulk J + a_dev K (the residual keeps these sums: stored diagnostics depend on their bits)
    a_bulk = np.sum(m * BULK_PROJECTOR)  # ‖J‖² = 1
    a_dev = np.sum(m * DEVIATORIC_PROJECTOR) / 5.0  # ‖K‖² = 5
    iso = a_bulk * BULK_PROJECTOR + a_dev * DEVIATORIC_PROJECTOR
    norm = np.linalg.norm(m)
    residual = float(np.linalg.norm(m - iso) / norm) if norm > 0 else 0.0
    return float(chi_l), float(chi_t), residual


def parse_direction(text: str):
    """Parse a named direction: ``"110"`` or ``"110:1-10"`` (Miller indices, ``-`` before a negative digit).

    Parameters
    ----------
    text : str
        ``"q"`` or ``"q:p"``: propagation direction q and, optionally, transverse polarization p.

    Returns
    -------
    q : tuple of 3 int
    p : tuple of 3 int or None

    Raises
    ------
    ValueError
        With a ``must …`` message, for malformed input or p not ⟂ q.
    """
    def miller(s):
        out, sign = [], 1
        for ch in s:
            if ch == "-":
                if sign == -1:
                    raise ValueError("must be Miller indices like '110' or '1-10'")
                sign = -1
            elif ch.isdigit():
                out.append(sign * int(ch))
                sign = 1
            else:
                raise ValueError("must be Miller indices like '110' or '110:1-10'")
        if len(out) != 3 or sign == -1 or not any(out):
            raise ValueError("must be three Miller indices, not all 0, like '111' or '110:1-10'")
        return tuple(out)

    if not isinstance(text, str):
        raise ValueError("must be a string like '100' or '110:001'")
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError("must be 'q' or 'q:p' (Miller indices)")
    q = miller(parts[0])
    p = miller(parts[1]) if len(parts) == 2 else None
    if p is not None and sum(a * b for a, b in zip(q, p)) != 0:
        raise ValueError("must have the polarization p perpendicular to q")
    return q, p


def direction_vectors(directions) -> tuple[np.ndarray, np.ndarray]:
    """Mandel strains of named directions (:func:`parse_direction`, then :func:`direction_strains`; Eq. 2.12).

    Parameters
    ----------
    directions : sequence of str
        ``"q"`` or ``"q:p"`` strings.

    Returns
    -------
    e_l, e_t : ndarray [n_dir, 6]
        Longitudinal and transverse Mandel strains (dimensionless).
    """
    el, et = [], []
    for d in directions:
        try:
            q, p = parse_direction(d)
        except ValueError as exc:
            raise InputError(f"direction = {d!r}: {exc}") from None
        a, b = direction_strains(np.array(q, float), None if p is None else np.array(p, float))
        el.append(a)
        et.append(b)
    return np.array(el).reshape(-1, 6), np.array(et).reshape(-1, 6)
