# Two commands on a fresh machine:  `make serve`  and  `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PORT    ?= 50051
METRICS_PORT ?= 9090

.PHONY: install install-runtime install-system serve test test-slow lint lock proto models training-bars bench loadtest loadtest-overload loadtest-soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# pip runs again only when a file that says what to install changed since it last succeeded (a stamp in the venv):
# `make test` and `make serve` then work without the package index, and skip a pip run of 20-60 s each time.
INSTALL_INPUTS := pyproject.toml clients/pyproject.toml protos/pyproject.toml constraints.txt

# Serving only: no torch, no trainer dependencies; the client SDK and `trm-client` to talk to it.
install-runtime: $(VENV)/.runtime-installed
$(VENV)/.runtime-installed: $(BIN)/python $(INSTALL_INPUTS)
	$(BIN)/pip install -q -c constraints.txt -e protos -e . -e clients
	touch $@

# Everything: trainer (CPU torch), dev tools, client SDK.
install: $(VENV)/.installed install-system
$(VENV)/.installed: $(BIN)/python $(INSTALL_INPUTS)
	$(BIN)/pip install -q -c constraints.txt -e protos -e '.[train,dev]' -e 'clients[mcp]'
	touch $@ $(VENV)/.runtime-installed

# Debian packages the tests use for real: Prometheus server and promtool; docker-compose to
# validate deploy/compose.yaml (no Docker engine is needed for `docker-compose config`); openssl
# (the TLS tests' certificates) and curl (the README's commands, run as written).
SYSTEM_PACKAGES := prometheus docker-compose openssl curl
install-system:
	@{ command -v promtool && command -v docker-compose && command -v openssl && command -v curl; } >/dev/null 2>&1 || { \
	  had_prometheus=$$(dpkg-query -W -f='$${Status}' prometheus 2>/dev/null | grep -c 'ok installed'); \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null \
	   && { [ "$$had_prometheus" = 1 ] || systemctl disable --now prometheus >/dev/null 2>&1 || true; }) \
	  || echo "warning: could not install the Debian packages $(SYSTEM_PACKAGES); their tests will fail"; }
# (The tests start their own Prometheus; the service of a package installed here would hold :9090, `make serve`'s
# metrics port, so it is stopped; a Prometheus installed before is left as it is.)

serve: install-runtime
	@$(BIN)/trm-service serve --host 127.0.0.1 --port $(PORT) --metrics-port $(METRICS_PORT); status=$$?; \
	if [ $$status -eq 2 ]; then echo "make serve: if a port is in use, choose others: make serve PORT=50052 METRICS_PORT=9091" >&2; fi; \
	exit $$status

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The tests marked slow, which `make test` leaves out; pytest's status 5 (nothing selected) passes.
test-slow: install
	@$(BIN)/python -m pytest -q -m slow; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test-slow: no test is marked slow"; exit 0; fi; exit $$status

lint:
	$(BIN)/ruff check .

# constraints.txt from the environment `make install` made (after a dependency change, and `make test` passes);
# a local version label (torch's +cpu) is left out, so that the same release of another build satisfies it, and
# each pin holds on this Python version only (a marker): on another, pip chooses as without the file.
lock:
	@version=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable \
	  | sed -E "s/\+[[:alnum:].]+$$//; s/$$/ ; python_version == \"$$version\"/"; } > constraints.new
	mv constraints.new constraints.txt

proto:
	PATH=$(CURDIR)/$(BIN):$$PATH protos/generate.sh

# Retrain the four default bundles from scratch (long; see each bundle's REPORT.md).
models: install
	$(BIN)/python -m trainer.make_models

# The `trm-train fit` bars of docs/TRAINING.md: public data sets as a user's CSVs, each fit with default flags
# (28-42 min measured on a 2-core CPU: docs/TRAINING.md); bundles and logs in bars/.
training-bars: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m trainer.bar_sets --out bars/data --fit bars

# Service vs the naive PyTorch baseline; BENCH_ARGS='--bundles untrained' before the default bundles exist.
bench: install
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

# Locust against a local server on 127.0.0.1; reports in reports/loadtest/ (LOADTEST_ARGS='--bundles untrained').
loadtest: install
	$(BIN)/python -m loadtests.run --scenario steady $(LOADTEST_ARGS)

loadtest-overload: install
	$(BIN)/python -m loadtests.run --scenario overload $(LOADTEST_ARGS)

loadtest-soak: install
	$(BIN)/python -m loadtests.run --scenario soak $(LOADTEST_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache reports bars
