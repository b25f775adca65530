"""Benchmarks for brinelite and segtrain: ``python -m benchmarks.run`` (``make bench``).

Not tests: nothing here asserts a timing. See docs/benchmarks.md for the figures.
"""
