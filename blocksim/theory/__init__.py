"""The analytic side: the recursion of Sec. III–V of [ZL] and the absorption split of Eq. (3.4)–(3.7).

* :mod:`~blocksim.theory.recursion` — Eq. (3.5)–(3.7), (4.1)–(4.5), (5.8)–(5.10) as functions;
* :mod:`~blocksim.theory.decomposition` — Ė^(1), Ė^(2), Ė^(3) and the interaction part of a solved
  super block.

Imports the model, response and spectra layers; nothing below imports it.
"""
