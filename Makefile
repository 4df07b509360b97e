# Two commands for a newcomer: `make run` and `make test`. Everything else is what they call.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt workers/agent/requirements.txt 2>/dev/null | sha256sum | cut -c1-16)
NODE_STAMP := node_modules/.installed-$(shell cat package-lock.json 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: run test install lint demo clean-run mutation

$(REQ_STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*; touch $@

# `npm install`, not `npm ci`: npm 11's ci refuses @foundry-rs/anvil's per-platform optional
# packages that the lock file (correctly) leaves out for other platforms. The lock is still used.
$(NODE_STAMP):
	npm install --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*; touch $@

install: $(REQ_STAMP) $(NODE_STAMP)

# The settings refuse to start without a strong DJANGO_SECRET_KEY (unless DJANGO_DEBUG=true); local
# targets use this checkout's random one (.run/secret-key) unless the environment has a key.
LOCAL_KEY = DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(bash scripts/local_secret_key.sh)}"

lint: install
	if [ -n "$$DATABASE_URL" ]; then bash scripts/ensure_postgres.sh; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(LOCAL_KEY) $(BIN)/python manage.py makemigrations --check --dry-run

# Unit, adversarial and integration tests (real Redis, real Anvil). SQLite unless DATABASE_URL
# says otherwise. The Ganache run of the chain integration tests is `make test-ganache`.
# Tests send Celery tasks to Redis database 15, so a `make run` worker on database 0 never
# picks up a test's task (and runs it against the wrong database).
# TEST_MARKS selects by marker; CI's PostgreSQL run adds "and not engine_agnostic".
TEST_MARKS ?= not ganache
test: lint
	bash scripts/ensure_redis.sh
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_bwrap.sh
	REDIS_URL="$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" $(BIN)/pytest -q -m "$(TEST_MARKS)" --durations=15

test-ganache: install
	$(BIN)/pytest -q -m ganache

# Regenerates docs/dashboard.png, docs/machine.png and docs/order.png from the browser test
# (headless Chromium walking the admin as staff).
screenshots: install
	bash scripts/ensure_redis.sh
	bash scripts/ensure_chromium.sh
	DASHBOARD_SCREENSHOTS=docs REDIS_URL="$${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}" \
		$(BIN)/pytest -q tests/dashboard/test_browser.py

# The whole marketplace on this machine: web, worker, beat, a local chain and a demo provider.
run: install
	bash scripts/run.sh

# A narrated end-to-end story in a few minutes: its own Anvil, Redis, web server and worker on
# free ports and its own SQLite file under .run/demo/; it stops all of them when it ends.
demo: install
	bash scripts/ensure_bwrap.sh
	$(LOCAL_KEY) BENCHMARK_SMALL_SUITES=1 $(BIN)/python scripts/demo.py

# Mutation testing (mutmut) of the modules that money and trust rest on; prints, per module,
# mutants, killed, survived and equivalent beside the 90% target. Not part of `make test`: it
# takes tens of minutes on 2 cores. `make mutation SCOPES=verification` runs one scope;
# MUTATION_ARGS passes options (`--sample 20`, `--show-survivors`; `--help` lists them).
mutation: install
	bash scripts/ensure_redis.sh
	$(BIN)/python scripts/mutation.py $(SCOPES) $(MUTATION_ARGS)

clean-run:
	rm -rf .run db.sqlite3
