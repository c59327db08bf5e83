# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed
export FLASK_APP := wsgi

.PHONY: run test lint fmt install clean migrate-check bench lock check-lock

# The locks (requirements*.txt, every package pinned with its hashes) are what installs;
# requirements*.in are the human-edited lists they are compiled from (`make lock`).
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("paymentapp needs Python 3.11+") if sys.version_info < (3, 11) else None'
	$(PYTHON) scripts/check-lock.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(NPM_STAMP)

install: $(STAMP) $(NPM_STAMP)

run: install
	$(VENV)/bin/flask --app wsgi db upgrade
	RECONCILER_IN_PROCESS=$${RECONCILER_IN_PROCESS:-1} WEBHOOKS_IN_PROCESS=$${WEBHOOKS_IN_PROCESS:-1} \
		WEB_CONCURRENCY=$${WEB_CONCURRENCY:-1} \
		$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	$(PYTHON) scripts/check-lock.py
	./scripts/ensure-test-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(VENV)/bin/python bench/run.py

lock: $(STAMP)
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
		-o requirements.txt requirements.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-trusted-host --no-emit-find-links \
		-o requirements-dev.txt requirements-dev.in

check-lock:
	$(PYTHON) scripts/check-lock.py

clean:
	rm -rf $(VENV) node_modules instance .pytest_cache
