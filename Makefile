# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv from pyproject.toml when it is missing or older than pyproject.toml or setup.py.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean messages

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@# Argon2 compiled for this CPU when that gives the same hashes (HOVIYAT_NATIVE_ARGON2=0 keeps the wheel).
	$(BIN)/python tools/native_argon2.py
	touch $(STAMP)

## demo: set up the provider and demo users, register the two example sites, then serve all three
## (Hoviyat on localhost:5000, the carmaker on 127.0.0.1:5001, the device registry on :5002); Ctrl-C stops them
demo: $(STAMP)
	IDP_CAPTCHA_DEMO=$${IDP_CAPTCHA_DEMO:-true} $(BIN)/python -m idp.demo

## test: lint, then the whole suite on SQLite + in-process store and on PostgreSQL + Redis when they answer,
## spread over the machine's cores (pytest-xdist; each worker has its own database and key prefix)
test: $(STAMP) lint
	@# pytest's exit code 5 means it collected no test: a broken suite, not a pass.
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis

## messages: re-extract translatable text and merge it into the Persian catalogue (then translate the new entries)
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l -o idp/translations/messages.pot .
	$(BIN)/pybabel update -i idp/translations/messages.pot -d idp/translations -w 120
