"""Benchmark protocols: the papers' method rows, models and per-profile settings (5x notebooks)."""
