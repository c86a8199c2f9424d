"""The analytic side: the recursion of Sec. III–V of [ZL] and the absorption split of Eq. (3.4)–(3.7).

* :mod:`~blocksim.theory.recursion` — Eq. (3.5)–(3.7), (4.1)–(4.5), (5.8)–(5.10) as functions;
* :mod:`~blocksim.theory.decomposition` — Ė^(1), Ė^(2), Ė^(3) and the interaction part of a solved
  super block;
* :mod:`~blocksim.theory.interaction_split` — the exact split of the interaction part of the band Im χ
  into resonant (clusters, dressed members) and non-resonant parts;
* :mod:`~blocksim.theory.semianalytic` — the first-order non-resonant interaction part from
  rotation-averaged single-block moments and lattice sums of Λ (no solver), the resonant-pair count
  estimate and the excess weight of unnormalized first-order amplitudes.

Imports the model, response and spectra layers; nothing below imports it.
"""
