"""Tests of blocksim.spectra.exact: sector and full exact diagonalization (checks of the first-order solver)."""

import numpy as np
import pytest

from blocksim import spectra
from blocksim.errors import InputError

from spectra_cases import random_members, superblock, with_dipoles


def test_sector_equals_full_ed_when_sector_is_whole_space():
    sb = superblock(3, 2, 0.05)
    full = spectra.solve(sb, "exact")
    sector = spectra.solve(sb, "sector", max_excitations=sb.n_blocks)
    np.testing.assert_allclose(sector.energies, full.energies, atol=1e-11)
    # gauge-invariant strengths, summed within (near-)degenerate levels
    np.testing.assert_allclose(np.sum(sector.amp0**2, axis=1), np.sum(full.amp0**2, axis=1), atol=1e-9)


def test_exact_solver_refuses_large_dimension_and_says_limit():
    rng = np.random.default_rng(0)
    e, s = random_members(rng, 27, 2)
    sb = spectra.assemble_superblock(e, s, None, 3, 0.1, 1.6)
    with pytest.raises(InputError, match=str(spectra.MAX_EXACT_DIM)):
        spectra.solve(sb, "exact")


def test_dipole_channel_exact_equals_sector_and_first_order_ground_shift():
    sb, (e, s, p, rot) = with_dipoles(22, 0.0, 0.01)
    ex = spectra.solve(sb, "exact")
    sector = spectra.solve(sb, "sector", max_excitations=8)
    np.testing.assert_allclose(sector.energies, ex.energies, atol=1e-11)
    # first order: E_0 − Σ E_0^(s) = g_e Σ_{s≠t} ⟨0|p^s|0⟩·μ̂·⟨0|p^t|0⟩ (+ O(g_e²))
    p0 = sb.dipoles[:, :, 0, 0]
    first = sum(p0[a] @ sb.coupling(a, b)[6:, 6:] @ p0[b] for a in range(8) for b in range(8) if a != b)
    shifts = []
    for g_e in (0.005, 0.01):
        sbx, _ = with_dipoles(22, 0.0, g_e)
        shifts.append(spectra.solve(sbx, "exact").diagnostics["ground_shift"] - first * g_e / 0.01)
    assert abs(shifts[0]) < 0.3 * abs(first) * 0.5 and abs(shifts[1] / shifts[0]) == pytest.approx(4.0, rel=0.1)
