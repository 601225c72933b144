"""mtlkit: a notebook-first workbook on multi-task learning loss weighting."""

__version__ = "0.1.0"
