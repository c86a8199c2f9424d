# Two entry points (README): `make run` and `make test`. Both create .venv and install blocksim.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-fast test-nojit setup clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,plot,dask]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/blocksim run runs/quickstart.toml -o out/quickstart.h5 --force

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

# The numba kernels' Python bodies (prange as range, no compilation): the kernel tests under NUMBA_DISABLE_JIT=1.
KERNEL_TESTS = tests/test_coupling.py tests/test_perturbative.py tests/test_large_lattice.py tests/test_batch.py
test-nojit: $(STAMP)
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider $(KERNEL_TESTS)

bench: $(STAMP)
	$(BIN)/blocksim bench

clean:
	rm -rf $(VENV) out
