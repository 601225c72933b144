# The two commands of the README, and `make lab`.  All start with the same idempotent set-up.
PY := .venv/bin/python
export PYTHONHASHSEED := 0

.PHONY: setup run test lab results sweep lint smoke-notebooks clean

setup:
	bash scripts/setup.sh

## make run: execute the whole notebook series (teach profile) and write runs/teach/index.html
run: setup
	$(PY) -m mtlkit.nbrun notebooks/[0-9]*.ipynb --profile teach --out runs/teach --report

## make lab: open the series in JupyterLab (loopback only; the URL with its token is printed)
lab: setup
	$(PY) -m jupyterlab --ip=127.0.0.1 --notebook-dir=notebooks

## make test: lint, stripped notebooks, unit tests and every notebook (smoke) in one pytest session
test: setup
	bash scripts/test.sh

## make results: the benchmark notebooks' whole grid (paper-cpu profile; 10-25 min a notebook on a CPU), then
## ship every completed run to results/<notebook>/ with its command, commit, machine and date.
## Restrict with NB='notebooks/50_*.ipynb'; JOBS runs notebooks in parallel.
## No cell timeout: a paper-cpu grid is one long cell (longer still on a busy machine).
NB ?= notebooks/5[0-9]_*.ipynb
JOBS ?= 1
results: setup
	$(PY) -m mtlkit.nbrun $(NB) --profile paper-cpu --out runs/paper-cpu --jobs $(JOBS) --cell-timeout 0
	$(PY) -m mtlkit.shipped runs/paper-cpu --all --command "make results NB='$(NB)'"

## make sweep: run a sweep file on this machine, or on Ray with ARGS='--backend ray --address auto'
## (README: "Sweeps"); run it again to resume: only missing and failed runs execute
SWEEP ?= examples/sweeps/rlw_table1.yaml
ARGS ?=
sweep: setup
	$(PY) -m mtlkit.nbrun --sweep $(SWEEP) $(ARGS)

clean:
	rm -rf runs/smoke-prepared .pytest_cache
