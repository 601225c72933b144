"""Benchmark protocols: the papers' method rows, models, settings and searches, per notebook."""
