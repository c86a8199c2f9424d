"""Tests of blocksim.spectra (the facade solve()): every solver against the g = 0 limit, cubic symmetry, input checks."""

import numpy as np
import pytest

from blocksim import response, spectra
from blocksim.model.coupling import lattice_positions
from blocksim.errors import InputError
from blocksim.model.tensors import cubic_rotations, direction_strains, random_rotation, rotation_mandel

from spectra_cases import random_members, single_block_sum, superblock


@pytest.mark.parametrize("method", ["perturbative", "sector", "exact"])
def test_zero_coupling_equals_sum_of_single_blocks(method):
    sb = superblock(1, 2, 0.0)
    spec = spectra.solve(sb, method)
    temps = np.array([0.0, 0.3, 1.0])
    omega = np.linspace(-2, 3, 81)
    for q in ([0, 0, 1], [1, 1, 1]):
        e_l, e_t = direction_strains(q)
        for strain in (e_l, e_t):
            got = response.im_chi_tilde(spec.transitions(temps), omega, strain, line="lorentzian", width=0.05)
            want = single_block_sum(sb, temps, omega, strain, 0.05)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("method", ["perturbative", "sector"])
def test_cubic_symmetry_of_response(method):
    rng = np.random.default_rng(8)
    n0, n = 2, 2
    e, s = random_members(rng, n0**3, n)
    rot = random_rotation(rng, n0**3)
    sb = spectra.assemble_superblock(e, s, rot, n0, 0.03, 1.7)
    omega = np.linspace(0.2, 2.0, 40)
    temps = np.array([0.0, 0.5])
    q = np.array([0.3, -0.5, 0.8])
    e_l, e_t = direction_strains(q, np.cross(q, [1.0, 0.0, 0.0]))
    base = spectra.solve(sb, method).transitions(temps)
    ref_l = response.im_chi_tilde(base, omega, e_l, width=0.05)
    ref_t = response.im_chi_tilde(base, omega, e_t, width=0.05)
    pos = lattice_positions(n0)
    centre = (n0 - 1) / 2
    for c in cubic_rotations()[[1, 7, 13, 22]]:
        new_pos = np.rint((pos - centre) @ c.T + centre).astype(int)
        order = np.lexsort((new_pos[:, 2], new_pos[:, 1], new_pos[:, 0]))  # back to C order
        stress = np.einsum("ab,sbmn->samn", rotation_mandel(c), sb.stress)
        sb2 = spectra.assemble_superblock(e[order], stress[order], None, n0, 0.03, 1.7, positions=new_pos[order])
        tr = spectra.solve(sb2, method).transitions(temps)
        e_l2, e_t2 = direction_strains(c @ q, c @ np.cross(q, [1.0, 0.0, 0.0]))
        np.testing.assert_allclose(response.im_chi_tilde(tr, omega, e_l2, width=0.05), ref_l, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(response.im_chi_tilde(tr, omega, e_t2, width=0.05), ref_t, rtol=1e-9, atol=1e-12)


def test_unknown_solver_and_bad_threshold():
    sb = superblock(0, 2, 0.1)
    with pytest.raises(InputError, match="solver.method"):
        spectra.solve(sb, "dmrg")
    with pytest.raises(InputError, match="resonance_threshold"):
        spectra.solve(sb, "perturbative", resonance_threshold=2.0)
