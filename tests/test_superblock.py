"""Tests of blocksim.spectra.superblock: assembly of a super block, its input checks and the dipole coupling (Eq. 5.2)."""

import numpy as np
import pytest

from blocksim import spectra
from blocksim.errors import InputError

from spectra_cases import random_members, with_dipoles


@pytest.mark.parametrize(
    "kwargs, field",
    [
        pytest.param(dict(n0=1), "n0", id="n0-too-small"),
        pytest.param(dict(coupling_g=-1.0), "coupling_g", id="negative-g"),
        pytest.param(dict(coupling_g=float("nan")), "coupling_g", id="nan-g"),
        pytest.param(dict(cl_over_ct=1.1), "cl_over_ct", id="cl-ct-below-bound"),
        pytest.param(dict(form="jl"), "form", id="unknown-form"),
    ],
)
def test_bad_assembly_input(kwargs, field):
    rng = np.random.default_rng(0)
    e, s = random_members(rng, 8, 2)
    args = dict(n0=2, coupling_g=0.1, cl_over_ct=1.6, form="zhou-leggett")
    args.update(kwargs)
    with pytest.raises(InputError, match=field):
        spectra.assemble_superblock(e, s, None, args["n0"], args["coupling_g"], args["cl_over_ct"], args["form"])


def test_dipole_channel_off_is_identical_and_coupling_is_eq_5_2():
    sb, (e, s, p, rot) = with_dipoles(21, 0.05, 0.0)
    plain = spectra.assemble_superblock(e, s, rot, 2, 0.05, 1.6)
    a, b = spectra.solve(sb, "exact"), spectra.solve(plain, "exact")
    np.testing.assert_allclose(a.energies, b.energies, atol=1e-12)
    sb2, _ = with_dipoles(21, 0.05, 0.3)
    from blocksim.model.coupling import dipole_coupling

    r = (sb2.positions[0] - sb2.positions[5]).astype(float)
    np.testing.assert_allclose(sb2.coupling(0, 5)[6:, 6:], 0.3 * dipole_coupling(r, 1.0), rtol=1e-14)
    np.testing.assert_allclose(sb2.coupling(0, 5)[:6, 6:], 0.0)
