"""Benchmarks: our executor side by side with the Amazon provider's, against the same localbatch.

Run ``make bench`` (full sizes) or ``make bench-quick`` (a tenth of the sizes). See ``bench.run``.
Not shipped: this package lives at the repository root next to ``devstack``.
"""
