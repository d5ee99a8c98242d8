"""Benchmarks for lago-segment: ``python -m benchmarks`` runs them all.

Every figure is a ratio against a baseline measured in the same run on the
same machine, so a noisy, shared machine moves both sides alike.
"""
