"""blocksim benchmark suite (run with ``blocksim bench`` or ``python -m benchmarks``).

``baselines``: plain NumPy implementations used as the denominators of the ratios.
``suite``: the measurements, the table and the JSON report. See docs/performance.md.
"""
