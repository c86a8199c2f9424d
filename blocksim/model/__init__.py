"""The model layer: what a block is and how blocks couple (BRIEF §1.1–1.2, §2).

* :mod:`~blocksim.model.tensors` — Mandel vectors, the 6×6 rotation representation, random SO(3),
  the cubic group, named directions and the isotropic (powder) projection;
* :mod:`~blocksim.model.units` — physical units ↔ engine units (Å, K, eV, g/cm³, km/s);
* :mod:`~blocksim.model.materials` — the 13-material table of Sec. IV of [ZL] and its fits;
* :mod:`~blocksim.model.blocks` — random block ensembles (generic, TTLS products, GOE);
* :mod:`~blocksim.model.coupling` — Λ (Eq. A15, A1), the lattice displacement table, ΔΛ (Eq. 2.17)
  and the dipole coupling (Eq. 5.2, 5.3).

Imports only :mod:`blocksim.errors`, :mod:`blocksim.choices` and :mod:`blocksim._numba`.
"""
