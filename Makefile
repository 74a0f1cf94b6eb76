# The two commands a fresh clone needs: `make demo` and `make test`. Each sets itself up.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test lint experiment bench clean

setup:
	@scripts/setup.sh local

setup-test:
	@scripts/setup.sh test

demo: setup
	$(VENV)/bin/fmlc demo $(ARGS)

test: setup-test
	$(VENV)/bin/ruff check fmlc training worker tests bench deploy
	$(VENV)/bin/mypy fmlc worker
	$(PY) -m pytest -q $(ARGS)

lint: setup-test
	$(VENV)/bin/ruff check fmlc training worker tests bench deploy
	$(VENV)/bin/mypy fmlc worker

clean:
	rm -rf $(VENV) build *.egg-info
