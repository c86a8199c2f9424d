"""Shared cases of the spectra tests: random members, super blocks, state matching, single-block sums."""

import numpy as np

from blocksim import response, spectra
from blocksim.model.tensors import random_rotation


def random_members(rng, nb, n, lo=0.5, hi=1.5):
    """Generic members with well separated random levels in [lo, hi] and GOE-like stresses."""
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(lo, hi, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    return e, 0.5 * (s + np.swapaxes(s, -1, -2))


def superblock(seed, n, g, n0=2, cl_over_ct=1.6):
    rng = np.random.default_rng(seed)
    e, s = random_members(rng, n0**3, n)
    return spectra.assemble_superblock(e, s, random_rotation(rng, n0**3), n0, g, cl_over_ct)


def match_states(a, b):
    """Index into b's states of each of a's states, matched by dominant product configuration."""
    lookup = {tuple(row): i for i, row in enumerate(b.labels)}
    return np.array([lookup[tuple(row)] for row in a.labels])


def single_block_sum(sb, temps, omega, strain, width):
    total = np.zeros((len(temps), len(omega)))
    for s in range(sb.n_blocks):
        tr = response.transitions_from_levels(sb.energies[s], sb.stress[s], temps)
        total += response.im_chi_tilde(tr, omega, strain, line="lorentzian", width=width)
    return total


def with_dipoles(seed, g, g_e, n=2):
    rng = np.random.default_rng(seed)
    e, s = random_members(rng, 8, n)
    p = rng.normal(size=(8, 3, n, n))
    p = 0.5 * (p + np.swapaxes(p, -1, -2))
    rot = random_rotation(rng, 8)
    return spectra.assemble_superblock(e, s, rot, 2, g, 1.6, dipoles=p, dipole_coupling=g_e), (e, s, p, rot)
