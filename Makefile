# Two commands for a fresh machine: `make run` and `make test`. `make services` and
# `make browsers` add what the full suite needs; `make build` is what a server needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.runtime
NPM_STAMP := node_modules/.installed
# The JS workspace (npm workspaces of the root package.json, one package-lock.json).
JS := clients/js
CLIENT_DIST := $(JS)/packages/client/dist/paymentapp-client.js
REACT_DIST := $(JS)/packages/react/dist/index.js
export FLASK_APP := wsgi

.PHONY: run test test-js lint fmt install build check-tools services browsers clean \
	migrate-check bench lock check-lock

# The prerequisites the README states (Python 3.11+ with venv, Node 20.19+ with npm),
# checked before anything is installed, with one line that says what is missing.
check-tools:
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/check-tools.sh python node

# The locks (requirements*.txt, every package pinned with its hashes) are what installs;
# requirements*.in are the human-edited lists they are compiled from (`make lock`).
# $(1): the lock to install into the venv.
define venv_install
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/check-tools.sh python
	$(PYTHON) scripts/check-lock.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(1)
	touch $@
endef

# Development: the runtime lock and the test and lint tools.
$(STAMP): requirements.txt requirements-dev.txt
	$(call venv_install,requirements-dev.txt)

# A server: the runtime lock alone (`make build`).
$(RUNTIME_STAMP): requirements.txt
	$(call venv_install,requirements.txt)

$(NPM_STAMP): package.json package-lock.json $(wildcard $(JS)/*/*/package.json)
	npm ci --no-audit --no-fund --silent
	touch $(NPM_STAMP)

# @paymentapp/client is the single source of /static/js/paymentapp-client.js (served by
# paymentapp/vendor.py from its dist/); @paymentapp/react is built on it.
$(CLIENT_DIST): $(NPM_STAMP) $(JS)/tsconfig.base.json $(wildcard $(JS)/packages/client/*.json \
		$(JS)/packages/client/src/* $(JS)/packages/client/scripts/*)
	npm run build --silent --workspace @paymentapp/client

$(REACT_DIST): $(CLIENT_DIST) $(wildcard $(JS)/packages/react/*.json $(JS)/packages/react/src/*)
	npm run build --silent --workspace @paymentapp/react

install: check-tools $(STAMP) $(NPM_STAMP) $(CLIENT_DIST) $(REACT_DIST)

# Everything a server needs, and no development tools: the venv with the runtime lock and
# the built JS packages (the app refuses to start without the client;
# docs/deployment.md#production).
build: check-tools $(RUNTIME_STAMP) $(NPM_STAMP) $(CLIENT_DIST) $(REACT_DIST)

run: install
	$(VENV)/bin/flask --app wsgi db upgrade
	RECONCILER_IN_PROCESS=$${RECONCILER_IN_PROCESS:-1} WEBHOOKS_IN_PROCESS=$${WEBHOOKS_IN_PROCESS:-1} \
		WEB_CONCURRENCY=$${WEB_CONCURRENCY:-1} \
		$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# Installs nothing beyond `make install`: tests whose service or browser is missing skip,
# and the summary ends with the command that runs them (tests/conftest.py).
# Every core: the end-to-end and browser tests in one group on one worker (they start
# their own servers, one module at a time), the unit tests on the others (tests/conftest.py).
PYTEST_PARALLEL ?= -n auto --dist loadgroup

test: install
	$(PYTHON) scripts/check-lock.py
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory test-js
	$(VENV)/bin/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# What the end-to-end and browser tests need, each only when asked: the local PostgreSQL
# and Redis started when installed but not running, and Debian's Chromium installed.
services:
	./scripts/services.sh

browsers:
	./scripts/browsers.sh

# tsc --noEmit on the packages and the example, then vitest (jsdom): well under a minute.
test-js: install
	npm run --silent typecheck
	npm test --silent

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The side-by-side callback benchmark (bench/README.md): paymentapp at INFO (the headline)
# and at WARNING, the bare Flask-SocketIO floor and the Node peer, 2,000 dialogs, 100/s
# (median of 3 runs) and a sweep to 600/s (3 runs per rate for paymentapp, 1 for the
# others), a noisy neighbour, then 10,000 dialogs on paymentapp. About 35 minutes on 2 cores.
BENCH_ARGS ?= --servers paymentapp,paymentapp-warning,floor,node-pg --dialogs 2000 --rates 100 \
	--sweep 50,100,200,300,400,500,600 --full-sweep --runs 3 --sweep-runs 1 --noisy --big \
	--json test-artifacts/bench-callbacks.json
.PHONY: bench-quick bench-instructions bench-flow bench-charts
bench: install
	$(VENV)/bin/python bench/callbacks.py $(BENCH_ARGS)

# For iterating: one run, 2,000 dialogs at 100/s, paymentapp and node-pg (1-2 minutes).
bench-quick: install
	$(VENV)/bin/python bench/callbacks.py --quick

# Instructions per paid callback, counted by valgrind: the same count on a busy machine
# as on a quiet one, for measuring a change worth a few per cent (bench/instructions.py,
# about 7 minutes with the raw-SQL reference).
bench-instructions: install
	$(VENV)/bin/python bench/instructions.py --reference

# The order-creation and 'Enter PIN' -> browser flow through the simulator (bench/run.py).
bench-flow: install
	$(VENV)/bin/python bench/run.py

# The dashboard's chart queries and the orders page on 1 M seeded payments (bench/charts.py).
bench-charts: install
	$(VENV)/bin/python bench/charts.py

# Not on $(STAMP): that checks the lock, which is what is being remade (an edited .in).
lock:
	@test -x $(VENV)/bin/pip-compile || { echo "make lock needs the venv's pip-tools: run make install first"; exit 1; }
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
		-o requirements.txt requirements.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
		-o requirements-dev.txt requirements-dev.in

check-lock:
	$(PYTHON) scripts/check-lock.py

clean:
	rm -rf $(VENV) node_modules instance .pytest_cache $(JS)/packages/*/dist $(JS)/examples/*/dist
