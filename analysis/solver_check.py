"""Check the perturbative solver against full exact diagonalization on a trajectory's own super blocks.

    python analysis/solver_check.py OUT.h5 [--step K] [--superblocks 40] [--bins 2000]

Rebuilds super blocks of step K from the stored pool, members and rotations, solves each with the
perturbative solver and with full ED (n^N0³ ≤ blocksim.choices.MAX_EXACT_DIM), and prints the mean
resonance counts and the two metrics below. This says whether first-order theory controls a run's
parameters (docs/findings.md, "Single–double resonances").

Metrics: ``weight_distance`` = max_ω |W_PT(ω) − W_ED(ω)| / W_ED(∞), with W(ω) the cumulative T = 0
spectral weight ∫_0^ω |Im χ̃| (l and t; a Kolmogorov distance, insensitive to where bin edges fall)
on ω below the highest state both solvers computed (Lanczos ED returns the lowest states only),
and the largest error of the lowest eight perturbative levels against the ED states with the same
dominant product configuration.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np


def check(path, step: int = 0, superblocks: int = 40, bins: int = 2000) -> dict:
    """Perturbative vs exact on the first ``superblocks`` super blocks of ``step``; returns the metrics."""
    from blocksim import response, spectra
    from blocksim.io import open_trajectory
    from blocksim.model.tensors import direction_strains

    with open_trajectory(path) as tr:
        s = tr.steps[step]
        cfg = tr.run_config
    e_l, e_t = direction_strains([0, 0, 1], [1, 0, 0])
    n = min(superblocks, s.members.shape[0])
    errs, de, counts = [], [], {"n_resonant_pairs": [], "n_resonant_single_double": [], "n_dressed_members": []}
    for j in range(n):
        m = s.members[j]
        sb = spectra.assemble_superblock(s.pool_energies[m], s.pool_stress[m], s.rotations[j], cfg.lattice.n0,
                                         s.coupling_g, cfg.model.cl_over_ct, cfg.model.form)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spectra.ResonanceWarning)
            pt = spectra.solve(sb, "perturbative", resonance_threshold=cfg.solver.resonance_threshold)
        ex = spectra.solve(sb, "exact")
        for key in counts:
            counts[key].append(pt.diagnostics[key])
        top = float(min(np.max(pt.energies), np.max(ex.energies)))  # ED (Lanczos) has every state below its top
        edges = np.linspace(0.0, top, bins + 1)
        for strain in (e_l, e_t):
            a = np.cumsum(response.im_chi_tilde(pt.transitions([0.0]), edges, strain, line="bins")[0])
            b = np.cumsum(response.im_chi_tilde(ex.transitions([0.0]), edges, strain, line="bins")[0])
            errs.append(np.abs(a - b).max() / max(abs(b[-1]), 1e-300))
        lookup = {tuple(row): i for i, row in enumerate(ex.labels)}
        rows = [i for i in range(1, min(9, len(pt.energies))) if tuple(pt.labels[i]) in lookup]
        de.append(max((abs(pt.energies[i] - ex.energies[lookup[tuple(pt.labels[i])]]) for i in rows), default=np.nan))
    return {"superblocks": n, "coupling_g": s.coupling_g, **{k: float(np.mean(v)) for k, v in counts.items()},
            "weight_distance_mean": float(np.mean(errs)), "weight_distance_median": float(np.median(errs)),
            "weight_distance_max": float(np.max(errs)),
            "lowest_energies_error_median": float(np.nanmedian(de)), "lowest_energies_error_max": float(np.nanmax(de))}


def main(argv=None) -> int:
    """Command line: print the metrics of :func:`check` as ``name = value`` lines."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file")
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--superblocks", type=int, default=40)
    p.add_argument("--bins", type=int, default=2000)
    a = p.parse_args(argv)
    for key, value in check(a.file, a.step, a.superblocks, a.bins).items():
        print(f"{key} = {value:.4g}" if isinstance(value, float) else f"{key} = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
