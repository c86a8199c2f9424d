"""Large-lattice perturbative path: kernels against NumPy references, and thread-count independence.

The numba kernels of blocksim.spectra (tiled pair sums, local fields, resonant-pair listing) must give
the numbers of the plain NumPy references (1e-10 relative) on small lattices, including resonant
configurations, full cubes and spherical super blocks; and bit-identical results for any
NUMBA_NUM_THREADS (every output element is accumulated sequentially inside one prange iteration).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blocksim import response, spectra
from blocksim.model import coupling
from blocksim.spectra import perturbative, spectrum
from blocksim.model.tensors import random_rotation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.baselines import displacement_table_numpy, pair_sums_numpy  # noqa: E402


def members(seed, nb, n, lo=0.2, hi=2.0):
    rng = np.random.default_rng(seed)
    e = np.zeros((nb, n))
    e[:, 1:] = np.sort(rng.uniform(lo, hi, (nb, n - 1)), axis=1)
    s = rng.normal(size=(nb, 6, n, n))
    return e, 0.5 * (s + np.swapaxes(s, -1, -2)), random_rotation(rng, nb)


def superblock(seed, n0, n, g, sphere=False):
    pos = spectra.sphere_positions(n0) if sphere else None
    nb = n0**3 if pos is None else len(pos)
    e, s, rot = members(seed, nb, n)
    return spectra.assemble_superblock(e, s, rot, n0, g, 1.7, positions=pos)


CASES = [
    pytest.param(3, 2, 0.02, False, id="N0=3-n=2"),
    pytest.param(3, 3, 0.05, False, id="N0=3-n=3-resonant"),
    pytest.param(4, 2, 0.03, False, id="N0=4-n=2-resonant"),
    pytest.param(4, 3, 0.002, False, id="N0=4-n=3-weak"),
    pytest.param(4, 3, 0.04, True, id="N0=4-n=3-sphere-resonant"),
]


def assert_close(a, b, rtol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.abs(b).max(), 1e-300)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("n0, n, g, sphere", CASES)
def test_kernels_match_numpy_references(n0, n, g, sphere):
    sb = superblock(n0 * 10 + n, n0, n, g, sphere)
    fast = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=True)
    slow = perturbative.perturbative_amplitudes(sb, 0.1, use_kernels=False)
    for a, b in zip(fast[:5], slow[:5]):
        assert_close(a, b)
    # the chunked NumPy baseline of the benchmark gives the same pair sums (tiny chunks on purpose)
    u, t0 = perturbative._member_arrays(sb)
    h, delta, nres = pair_sums_numpy(sb.positions, sb.table, sb.n0, sb.coupling_g, sb.energies, u, t0, 0.1,
                                     chunk_elements=17)
    h_k = np.empty((sb.n_blocks, 6))
    perturbative._local_field_kernel(sb.positions, sb.table, sb.n0, t0, h_k)
    d_k = np.empty_like(delta)
    r_k = np.empty(sb.n_blocks, dtype=np.int64)
    perturbative._pair_kernel(sb.positions, sb.table, sb.n0, sb.coupling_g, sb.energies, u, 0.1, d_k, r_k)
    assert_close(h_k * sb.coupling_g, h)
    assert_close(d_k, delta)
    np.testing.assert_array_equal(r_k, nres)


def test_resonant_configurations_are_covered():
    counts = [perturbative.perturbative_amplitudes(superblock(n0 * 10 + n, n0, n, g, sph), 0.1)[2].sum()
              for n0, n, g, sph in [p.values for p in CASES]]
    assert counts[0] >= 0 and counts[1] > 0 and counts[2] > 0 and counts[4] > 0


@pytest.mark.parametrize("n0, n, g, sphere", CASES)
def test_resonant_pair_listing_matches_dense_criterion(n0, n, g, sphere):
    """The parallel second pass lists exactly the pairs |V| > thr·|ΔE| of the dense reference."""
    sb = superblock(n0 * 10 + n, n0, n, g, sphere)
    u, _ = perturbative._member_arrays(sb)
    nb, nl = sb.n_blocks, sb.n_levels
    delta = np.empty((nb, nl, 6))
    nres = np.empty(nb, dtype=np.int64)
    perturbative._pair_kernel(sb.positions, sb.table, sb.n0, sb.coupling_g, sb.energies, u, 0.1, delta, nres)
    rows = np.nonzero(nres)[0].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(nres[rows])]).astype(np.int64)
    oi, oj, ov = (np.empty(int(nres.sum()), dtype=np.int64), np.empty(int(nres.sum()), dtype=np.int64),
                  np.empty(int(nres.sum())))
    k = perturbative._resonant_pairs_kernel(sb.positions, sb.table, sb.n0, sb.coupling_g, sb.energies, u, 0.1,
                                       rows, offsets, oi, oj, ov)
    assert k == nres.sum()
    lam = sb.pair_matrix()
    v = 2.0 * np.einsum("sma,stab,tpb->smtp", u[:, 1:], lam, u[:, 1:])
    e = sb.energies[:, 1:]
    diff = e[:, :, None, None] - e[None, None, :, :]
    res = (np.abs(v) > 0.1 * np.abs(diff)) & (v != 0)
    res[np.arange(nb), :, np.arange(nb), :] = False
    want = {(s * (nl - 1) + m, t * (nl - 1) + p) for s, m, t, p in zip(*np.nonzero(res))}
    assert set(zip(oi.tolist(), oj.tolist())) == want
    assert_close(ov, v[oi // (nl - 1), oi % (nl - 1), oj // (nl - 1), oj % (nl - 1)])


@pytest.mark.parametrize("form", coupling.FORMS)
def test_numpy_table_baseline_matches_kernel(form):
    assert_close(displacement_table_numpy(5, 1.7, form), coupling.displacement_table(5, 1.7, form), rtol=1e-12)


def test_batched_boltzmann_equals_per_member_boltzmann():
    e, _, _ = members(3, 40, 5)
    e[2, 1] = 1e-13  # a (numerically) degenerate ground state
    temps = np.array([0.0, 0.05, 0.8, 7.0])
    want = np.stack([response.boltzmann(x, temps) for x in e], axis=1)
    np.testing.assert_array_equal(response.boltzmann(e, temps), want)


def test_sparse_population_weights_give_dense_populations():
    """Transitions of the perturbative solver (sparse weights) against the dense formula of DESIGN note 2."""
    sb = superblock(5, 4, 3, 0.01)
    spec = spectra.solve(sb, "perturbative")
    temps = np.array([0.0, 0.2, 1.0])
    tr = spec.transitions(temps)
    w = spec._pop_weights.toarray()[1:]
    p0 = response.boltzmann(spec.members[0], temps)[:, :, 0]
    want = (p0 @ w.T) / w.sum(axis=1)
    assert_close(tr.population[:, : len(w)], want, rtol=1e-14)
    assert spec.diagnostics["n_resonant_clusters"] > 0


_THREADS_SCRIPT = r"""
import json, sys, numpy as np, numba
from blocksim import spectra
from blocksim.spectra import perturbative
from blocksim.model.tensors import random_rotation
rng = np.random.default_rng(4)
n0, n = 6, 3
nb = n0**3
e = np.zeros((nb, n)); e[:, 1:] = np.sort(rng.uniform(0.2, 2.0, (nb, n - 1)), axis=1)
s = rng.normal(size=(nb, 6, n, n)); s = 0.5 * (s + np.swapaxes(s, -1, -2))
sb = spectra.assemble_superblock(e, s, random_rotation(rng, nb), n0, 0.03, 1.7)
sp = spectra.solve(sb, "perturbative")
omega, amp, nres, ground_t, h, _ = perturbative.perturbative_amplitudes(sb, 0.1)
out = {"threads": numba.get_num_threads(), "nres": int(nres.sum()),
       "hex": [x.tobytes().hex() for x in (omega, amp, ground_t, h, sp.energies, sp.amp0)]}
print(json.dumps(out))
"""


def test_kernels_are_bitwise_independent_of_thread_count(tmp_path):
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        proc = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True, text=True, env=env,
                              timeout=300, cwd=str(ROOT))
        assert proc.returncode == 0, proc.stderr
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["threads"] for r in results] == [1, 2]
    assert results[0]["nres"] > 0
    assert results[0]["hex"] == results[1]["hex"]


def test_serial_and_parallel_twins_are_bitwise_equal():
    sb = superblock(8, 4, 3, 0.03)
    u, t0 = perturbative._member_arrays(sb)
    nb, nl = sb.n_blocks, sb.n_levels
    outs = []
    for lf, pk in ((perturbative._local_field_kernel_serial, perturbative._pair_kernel_serial),
                   (perturbative._local_field_kernel_parallel, perturbative._pair_kernel_parallel)):
        h = np.empty((nb, 6))
        lf(sb.positions, sb.table, sb.n0, t0, h)
        d = np.empty((nb, nl, 6))
        r = np.empty(nb, dtype=np.int64)
        pk(sb.positions, sb.table, sb.n0, sb.coupling_g, sb.energies, u, 0.1, d, r)
        outs.append((h, d, r))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert outs[0][2].sum() > 0
