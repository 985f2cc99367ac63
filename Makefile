# The two commands a person needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test suite lint typecheck bench venv clean sandbox-image app-image agent-images

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m agenthub.run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy agenthub agenthub_cli jobs notify hooks gateway scripted_model egress

# Tests keep their data (stores, workspaces, the SQLite test database) apart from make run's;
# pytest's tmp_path lives beside it (--basetemp), so another pytest run on the machine, which
# resets the shared /tmp/pytest-of-<user>, never removes a running test's directories.
# The suite runs in TEST_PROCESSES pytest-xdist processes (0: in pytest's own): most tests wait
# on workers, sandboxes, containers and the browser rather than compute, so more processes than
# cores pays. Each process keeps a data dir, test database and Redis database of its own
# (agenthub/settings.py, tests/conftest.py). `make suite` is the same without lint and typecheck.
TEST_DATA_DIR ?= /tmp/agenthub-test
TEST_PROCESSES ?= 3
test: lint typecheck suite

suite: $(STAMP)
	rm -rf $(TEST_DATA_DIR) && mkdir -m 755 -p $(TEST_DATA_DIR)
	AGENTHUB_DATA_DIR=$(TEST_DATA_DIR) $(BIN)/python -m agenthub.embedded_redis \
		$(BIN)/pytest --basetemp=$(TEST_DATA_DIR)-tmp -n $(TEST_PROCESSES) --durations=25 \
		$(PYTEST_ARGS)

# The docker backend's sandbox image (app-image: also web/worker), built without a registry and
# reused when unchanged; see docker/README.md.
sandbox-image: $(STAMP)
	docker/build-sandbox-image.sh
app-image: $(STAMP)
	docker/build-sandbox-image.sh --app

# The AI presets' CLIs, pinned (jobs/sandbox/toolchain.py): one read-only directory both
# backends mount, in AGENTHUB_TOOLCHAIN_DIR (default: the user's cache); reused when unchanged.
# Where a Docker Engine runs, also OpenHands' image (docker/build-openhands-image.sh).
agent-images: $(STAMP)
	$(BIN)/python -m jobs.sandbox.toolchain

bench: $(STAMP)
	AGENTHUB_DATA_DIR=$(TEST_DATA_DIR)-bench $(BIN)/python -m agenthub.bench

clean:
	rm -rf $(VENV) .agenthub
