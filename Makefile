# Every target creates .venv and installs what it needs on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test sim venv clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/spanlite demo

test: $(STAMP)
	$(BIN)/pytest -m "not slow" -p no:cacheprovider

sim: $(STAMP)
	$(BIN)/spanlite sim --seeds 300

clean:
	rm -rf $(VENV) build *.egg-info
