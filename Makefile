# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv when missing: `make demo` installs only what the demo needs (the
# package and rich), `make test` the dev tools too.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
# The suite also runs on the newest Python we support, when one is installed that runs
# (pyenv's shim may exist for a version that is not selected: each candidate is tried).
NEWEST ?= $(shell for p in $$HOME/.pyenv/versions/3.13*/bin/python3.13 $$(command -v python3.13); do \
	"$$p" -V >/dev/null 2>&1 && { echo "$$p"; break; }; done)
NEWEST_VENV := .venv-newest
# Two workers: measured best on 2 cores (docs/benchmarks.md has the wall times).
PYTEST_WORKERS ?= 2

.PHONY: demo test lint typecheck bench install clean protos

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[cli]"
	touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/actorstage demo --observe --duration 60

test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS)
ifneq ($(NEWEST),)
	test -x $(NEWEST_VENV)/bin/python || $(NEWEST) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	$(NEWEST_VENV)/bin/python -m pytest -n $(PYTEST_WORKERS)
else
	@echo "python3.13 is not installed: the suite ran on $$($(BIN)/python -V) only"
endif

lint: $(STAMP)
	$(BIN)/ruff check actorstage tests benchmarks examples
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Regenerate actorstage/_proto/ from actorstage/protos/ (the .proto files ship in the wheel;
# the output is committed; a test checks it is current).
# descriptors.binpb holds the file descriptors that the service's reflection answers with.
# actorstage/_proto/__init__.py is written by hand and kept.
protos: $(STAMP)
	find actorstage/_proto -mindepth 1 -maxdepth 1 ! -name __init__.py -exec rm -rf {} +
	cd actorstage/protos && PATH="$(CURDIR)/$(BIN):$$PATH" $(CURDIR)/$(BIN)/python \
		-m grpc_tools.protoc -I . \
		--python_betterproto2_out=$(CURDIR)/actorstage/_proto \
		--python_betterproto2_opt=client_generation=async,server_generation=async \
		--descriptor_set_out=$(CURDIR)/actorstage/_proto/descriptors.binpb --include_imports \
		$$(find . -name '*.proto' | sed 's|^./||' | sort)

clean:
	rm -rf $(VENV) $(NEWEST_VENV) build dist *.egg-info
