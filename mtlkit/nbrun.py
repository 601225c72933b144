"""The notebook batch runner: ``python -m mtlkit.nbrun NOTEBOOK... [options]``.

The public name of :mod:`mtlkit.batch.runner` (read its docstring, or ``python -m
mtlkit.nbrun --help``); ``from mtlkit import nbrun`` gives the same functions.
"""

import sys

from mtlkit.batch.runner import *  # noqa: F403 (this module is the runner's public name)
from mtlkit.batch.runner import main
from mtlkit.batch.runner import type_ok as _type_ok  # noqa: F401 (older code calls nbrun._type_ok)

if __name__ == "__main__":
    sys.exit(main())
