"""The papers' experimental protocols (method rows, models, settings) of the benchmarks."""
