"""The notebook batch runner (``python -m mtlkit.nbrun``), in layers; each module imports
only the ones above it in this list:

============== ===========================================================================
``runs``       run folders: markers, status, summaries, ``metrics.csv`` and ``runs.csv``
``params``     a notebook's ``parameters`` cell: read, parse (YAML), check, grids
``procguard``  pool workers and kernels that die with the runner (no mtlkit imports)
``sweep``      sweep files: notebooks, parameters, grid, zip, seeds, resources, retries
``execute``    one run: stage, papermill, record, promote; recover interrupted promotions
``backends``   where runs execute: in process, a child process per run (one GPU each), Ray
``schedule``   keep a backend busy, retry runs whose worker was lost, progress and ETA
``report``     the HTML report of an output folder (reads run folders only)
``aggregate``  sweep.csv and the benchmark tables and figures recomputed from all runs
``runner``     plan and the command line; :mod:`mtlkit.nbrun` is its public name
============== ===========================================================================

Nothing here is imported by the library's core (trainer, experiments, data, ...).
"""
