"""Plots of trajectories (matplotlib, Agg backend; files only, never a window).

:func:`plot_mb_flow` draws MB_num = sqrt(Im χ_l/Im χ_t) (powder average, with its jackknife error
bars) against the RG step, the MB of the uncoupled pool entering each step, and horizontal lines at
c_l/c_t (the fixed point of Eq. 4.5 of [ZL]) and at the bare ratio of the starting ensemble.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["plot_mb_flow"]


def plot_mb_flow(trajectory, png=None) -> Path:
    """Write the MB flow of ``trajectory`` (a path) to ``png`` (default: same stem, ``.png``); return it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is the [plot] extra
        raise InputError("plot: matplotlib is not installed (pip install 'blocksim[plot]')") from None
    from .io import open_trajectory

    path = Path(trajectory)
    png = Path(png) if png is not None else path.with_suffix(".png")
    with open_trajectory(path) as tr:
        s = tr.summary
        cfg = tr.run_config
    if not s:
        raise InputError(f"trajectory = {str(path)!r}: no complete steps to plot")
    step = np.asarray(s["step"])
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=120)
    ax.errorbar(step, s["mb_ratio"], yerr=s["mb_ratio_err"], fmt="o-", capsize=3,
                label="super blocks of step k (powder)")
    ax.errorbar(step, s["mb_ratio_pool"], yerr=s["mb_ratio_pool_err"], fmt="s", mfc="none", capsize=3,
                alpha=0.7, label="pool entering step k (uncoupled)")
    ax.axhline(cfg.model.cl_over_ct, color="k", ls="--", lw=1, label=f"c_l/c_t = {cfg.model.cl_over_ct:g}")
    ax.axhline(cfg.model.mb_bare, color="tab:red", ls=":", lw=1, label=f"bare γ_l/γ_t = {cfg.model.mb_bare:g}")
    ax.set_xlabel("RG step k (super-block size N0^(k+1) L_1)")
    ax.set_ylabel("MB = sqrt(Im χ_l / Im χ_t)")
    ax.set_xticks(step)
    ax.set_title(f"{path.stem}: g = {cfg.model.coupling:g}, N0 = {cfg.lattice.n0}, "
                 f"{cfg.solver.method}, {cfg.rg.pool_strategy}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png
