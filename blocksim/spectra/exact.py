"""Exact solvers of a super block: ED in a sector of product states and full ED (checks of Eq. 3.2)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from ..choices import DENSE_EXACT_DIM, MAX_EXACT_DIM, MAX_SECTOR_DIM, exact_state_count, sector_dimension
from ..errors import InputError
from .spectrum import Spectrum, carrier_weights
from .superblock import SuperBlock

__all__ = ["sector_configs", "sector_count",
           "sector_matrices", "solve_sector", "solve_exact"]



# ----------------------------------------------------------------------------------------------
# Exact diagonalization in a sector of product states (slow, obvious, general)
# ----------------------------------------------------------------------------------------------
def sector_configs(n_blocks: int, n_levels: int, max_excitations: int) -> np.ndarray:
    """All product configurations with ≤ max_excitations excited members, ``[K, N]`` int (levels).

    Ordered by excitation count, then lexicographically; row 0 is the ground configuration.
    """
    rows = [np.zeros(n_blocks, dtype=np.int64)]
    for k in range(1, max_excitations + 1):
        for sites in itertools.combinations(range(n_blocks), k):
            for levels in itertools.product(range(1, n_levels), repeat=k):
                c = np.zeros(n_blocks, dtype=np.int64)
                c[list(sites)] = levels
                rows.append(c)
    return np.array(rows)


def sector_count(n_blocks: int, n_levels: int, max_excitations: int) -> int:
    """Number of product states with at most ``max_excitations`` excited members (:func:`blocksim.choices.sector_dimension`)."""
    return sector_dimension(n_blocks, n_levels, max_excitations)


def sector_matrices(sb: SuperBlock, configs: np.ndarray):
    """H0 (diagonal), V and T_tot (``[6, K, K]``) in the product basis ``configs`` (slow reference).

    ⟨B|V|A⟩ = Σ_{u≠v} T^u_{B_u A_u} · gΛ^(uv) · T^v_{B_v A_v} · Π_{w≠u,v} δ(B_w, A_w) (Eq. 2.16).
    """
    nb = sb.n_blocks
    lam = sb.pair_matrix()  # [N, N, K, K]
    st = sb.operators  # V couples every component of X; T_tot uses the stress (first 6)
    index = {tuple(c): i for i, c in enumerate(configs)}
    k = len(configs)
    h0 = np.array([sb.energies[np.arange(nb), c].sum() for c in configs])
    v = np.zeros((k, k))
    t = np.zeros((6, k, k))
    for ia, a in enumerate(configs):
        diag_t = st[np.arange(nb), :, a, a]  # [N, 6]
        t[:, ia, ia] = diag_t[:, :6].sum(axis=0)
        v[ia, ia] = np.einsum("ua,uvab,vb->", diag_t, lam, diag_t)
        # local field on each member from the diagonal stresses of all others (lam[u, u] = 0)
        fields = np.einsum("uvab,vb->ua", lam, diag_t)
        for u in range(nb):
            for mu in range(sb.n_levels):
                if mu == a[u]:
                    continue
                b = a.copy()
                b[u] = mu
                ib = index.get(tuple(b))
                if ib is not None:
                    tu = st[u, :, mu, a[u]]
                    t[:, ib, ia] += tu[:6]
                    v[ib, ia] += 2.0 * tu @ fields[u]
                for w in range(u + 1, nb):
                    for mw in range(sb.n_levels):
                        if mw == a[w]:
                            continue
                        b2 = b.copy()
                        b2[w] = mw
                        ib2 = index.get(tuple(b2))
                        if ib2 is not None:
                            v[ib2, ia] += 2.0 * tu @ lam[u, w] @ st[w, :, mw, a[w]]
    return h0, v, t


def solve_sector(sb: SuperBlock, kmax: int) -> Spectrum:
    """Exact diagonalization of H (Eq. 2.16 of [ZL]) in the sector of ≤ ``kmax`` excited members.

    Parameters
    ----------
    sb : SuperBlock
        The finalized super block.
    kmax : int
        Largest number of excited members (1: ground + singles; 2: + doubles; N: the whole space).

    Returns
    -------
    Spectrum
        Every eigenstate of the sector (energies from the ground state, units of E*); populations at
        finite T follow DESIGN note 2 (independent excitations, weights from the sector eigenvectors).

    Raises
    ------
    InputError
        When the sector has more than :data:`blocksim.choices.MAX_SECTOR_DIM` states.
    """
    k = sector_count(sb.n_blocks, sb.n_levels, kmax)
    if k > MAX_SECTOR_DIM:
        raise InputError(
            f"sector dimension = {k} (N = {sb.n_blocks}, n = {sb.n_levels}, max_excitations = {kmax}): "
            f"must be ≤ {MAX_SECTOR_DIM}; use solver.method = 'perturbative'"
        )
    configs = sector_configs(sb.n_blocks, sb.n_levels, kmax)
    h0, v, t = sector_matrices(sb, configs)
    evals, evecs = scipy.linalg.eigh(np.diag(h0) + v)
    return _dense_spectrum(sb, evals, evecs, t, "sector", configs)


def _dense_spectrum(sb, evals, evecs, t, method, configs=None) -> Spectrum:
    ts = np.einsum("ik,aij,jl->akl", evecs, t, evecs, optimize=True)
    energies = evals - evals[0]
    amp0 = ts[:, :, 0].T.copy()
    pop_w = None
    if configs is not None:
        excited = (configs > 0).astype(float)  # [K_conf, N]
        pop_w = carrier_weights((evecs**2).T, excited, excited.sum(axis=1) == 1)  # [K, N]
    diag = {"n_states": len(evals), "ground_shift": float(evals[0])}
    return Spectrum(
        energies=energies,
        amp0=amp0,
        method=method,
        diagnostics=diag,
        _sb=sb,
        _excited_stress=None,
        _pop_weights=pop_w,
        _full_stress=ts,
        labels=configs[np.argmax(evecs**2, axis=0)],
    )


# ----------------------------------------------------------------------------------------------
# Full exact diagonalization (Kronecker construction: an independent route)
# ----------------------------------------------------------------------------------------------
def solve_exact(sb: SuperBlock, n_states) -> Spectrum:
    """Full exact diagonalization of H = Σ_s H_0^(s) + V (Eq. 2.16 of [ZL]) in the n^N product space.

    The Hamiltonian is built as a sparse matrix by a Kronecker construction (an independent route from
    the perturbative kernels). Up to :data:`blocksim.choices.DENSE_EXACT_DIM` states it is diagonalized
    densely; above it Lanczos (ARPACK, fixed start vector) finds the lowest ``n_states``.

    Parameters
    ----------
    sb : SuperBlock
        The finalized super block.
    n_states : int or None
        Lowest states to compute with Lanczos (default 1 + N(n − 1) + 32).

    Returns
    -------
    Spectrum
        Energies from the ground state (E*), ⟨0|T_tot|α⟩ and the total stress between the computed
        states (T*); transitions use true Boltzmann weights over the computed states.

    Raises
    ------
    InputError
        When n^N exceeds :data:`blocksim.choices.MAX_EXACT_DIM`.
    """
    nb, nl = sb.n_blocks, sb.n_levels
    dim = nl**nb
    if dim > MAX_EXACT_DIM:
        raise InputError(
            f"product dimension n^N = {nl}^{nb} = {dim}: full ED allows at most {MAX_EXACT_DIM}; "
            "use solver.method = 'sector' or 'perturbative'"
        )
    # Product basis in C order (member 0 slowest): state i has digits d_s(i), place value P_s.
    place = nl ** np.arange(nb - 1, -1, -1)
    state = np.arange(dim)
    digits = (state[:, None] // place[None, :]) % nl  # [dim, N]
    rows, cols, vals = [state], [state], [sb.energies[np.arange(nb), digits].sum(axis=1)]
    new = np.arange(nl)
    ops = sb.operators
    for s in range(nb):
        for u in range(s + 1, nb):
            # two-site operator ⟨d_s d_u|2 Σ_ab T^s_a gΛ_ab T^u_b|d_s' d_u'⟩, ordered pairs (s,u), (u,s)
            w = np.einsum("ab,bmn->amn", sb.coupling(s, u), ops[u])
            pair = 2.0 * np.einsum("aij,akl->ikjl", ops[s], w)  # [d_s, d_u, d_s', d_u']
            ds, du = digits[:, s], digits[:, u]
            target = (
                state[:, None, None]
                + (new[None, :, None] - ds[:, None, None]) * place[s]
                + (new[None, None, :] - du[:, None, None]) * place[u]
            )
            rows.append(np.repeat(state, nl * nl)), cols.append(target.ravel())
            vals.append(pair[ds, du].ravel())
    h = scipy.sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(dim, dim)
    ).tocsr()

    def total_stress(a):
        """T_tot,a = Σ_s T^(s)_a as a sparse matrix in the product basis."""
        r, c, v = [], [], []
        for s in range(nb):
            ds = digits[:, s]
            r.append(np.repeat(state, nl)), c.append((state[:, None] + (new[None, :] - ds[:, None]) * place[s]).ravel())
            v.append(sb.stress[s, a][ds].ravel())
        return scipy.sparse.coo_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(dim, dim)).tocsr()

    t_ops = [total_stress(a) for a in range(6)]
    if dim <= DENSE_EXACT_DIM:
        evals, evecs = scipy.linalg.eigh(h.toarray())
    else:
        k = exact_state_count(nb, nl, n_states)
        # Lanczos for the smallest algebraic eigenvalues, started from a fixed vector so the result
        # does not depend on ARPACK's random start. ARPACK can skip an eigenvalue that is exactly 0,
        # so the spectrum is shifted to be ≥ 1 (Gershgorin bound) and shifted back.
        h = h.tocsr()
        radius = np.asarray(abs(h).sum(axis=1)).ravel() - np.abs(h.diagonal())
        shift = 1.0 - float(np.min(h.diagonal() - radius))
        v0 = np.full(dim, 1.0 / np.sqrt(dim))
        evals, evecs = scipy.sparse.linalg.eigsh(
            h + shift * scipy.sparse.identity(dim, format="csr"),
            k=int(k), which="SA", tol=1e-13, ncv=max(2 * int(k) + 1, 120), v0=v0,
        )
        evals = evals - shift
        order = np.argsort(evals)
        evals, evecs = evals[order], evecs[:, order]
    ts = np.stack([evecs.T @ (op @ evecs) for op in t_ops])
    energies = evals - evals[0]
    dominant = np.argmax(evecs**2, axis=0)
    labels = np.stack([(dominant // nl ** (nb - 1 - s)) % nl for s in range(nb)], axis=1)
    return Spectrum(
        energies=energies,
        amp0=ts[:, :, 0].T.copy(),
        method="exact",
        diagnostics={"n_states": len(evals), "ground_shift": float(evals[0]), "dimension": dim},
        _sb=sb,
        _excited_stress=None,
        _pop_weights=None,
        _full_stress=ts,
        labels=labels,
    )
