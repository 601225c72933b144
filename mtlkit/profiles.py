"""The run profiles every notebook understands (one place; see CONVENTIONS and the README).

========== ==================================================================
profile    what it runs
========== ==================================================================
smoke      tiny real or generated data; seconds per notebook on a CPU (CI)
teach      the embedded real datasets; minutes on a laptop CPU (the default)
paper-cpu  the benchmark notebooks' whole method x seed grid on the embedded or
           stand-in data, epochs and data shrunk to 10-25 minutes per notebook on
           one CPU thread (each header says how); its results ship under
           ``results/``; other notebooks run as teach
full       the papers' datasets from ``DATA_DIR``, GPU, paper-scale epochs
========== ==================================================================
"""

from __future__ import annotations

PROFILES: tuple[str, ...] = ("smoke", "teach", "paper-cpu", "full")
DEFAULT_PROFILE = "teach"
