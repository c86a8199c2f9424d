# Two entry points (README): `make run` and `make test`. Both create .venv and install blocksim.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-fast setup clean bench

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

bench: $(STAMP)
	$(BIN)/blocksim bench

clean:
	rm -rf $(VENV) out
