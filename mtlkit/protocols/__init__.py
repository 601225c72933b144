"""The papers' experimental protocols (method rows, models, per-profile settings) of the
benchmark notebooks (5x)."""
