"""The notebook batch runner (``python -m mtlkit.nbrun``), in layers; each module imports
only the ones above it in this list:

============== ===========================================================================
``runs``       run folders: markers, status, summaries, ``metrics.csv`` and ``runs.csv``
``params``     a notebook's ``parameters`` cell: read, parse (YAML), check, grids
``procguard``  pool workers and kernels that die with the runner (no mtlkit imports)
``report``     the HTML report of an output folder (reads run folders only)
``runner``     plan, execute, promote and the command line; :mod:`mtlkit.nbrun` is its
               public name
============== ===========================================================================

Nothing here is imported by the library's core (trainer, experiments, data, ...).
"""
