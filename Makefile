# The two commands of README.md: `make run` and `make test`; `make bench` runs the benchmarks.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean lock image

# The locked dependencies (hashes checked), then the project itself without resolving again.
$(STAMP): pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -n 3 --no-loadscope-reorder --durations=15

run: $(STAMP)
	$(BIN)/domos run

# requirements/*.lock from pyproject.toml: the role image installs runtime.lock, the migrate image
# migrate.lock, the venv of `make test` dev.lock; each is constrained by the one before, so the
# three agree (tests/unit/infra/test_locks.py).
LOCK := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --no-header --annotation-style line pyproject.toml
lock: $(STAMP)
	$(LOCK) -o requirements/runtime.lock
	$(LOCK) --extra migrate -c requirements/runtime.lock -o requirements/migrate.lock
	$(LOCK) --extra dev -c requirements/migrate.lock -o requirements/dev.lock

# The role image (docker/build.sh: base images pulled, or built from Debian packages offline).
image:
	docker/build.sh

bench: $(STAMP)
	@for b in bench/*/run.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var
