# Every target wraps an `edge4k` CLI command. `make demo` runs the trained default
# checkpoint shipped in models/weights/. `make demo` and `make test` set
# themselves up on a fresh machine (a venv in .venv with the pinned dependencies).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo eval test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/edge4k run -o out/demo.png --profile out/demo.profile.json --tile 256 --overlap 32 --runs 3 --warmup 1

# Image quality of the shipped checkpoint vs LibRaw and learned/classical peers
# (docs/eval/ was written by the same command with -o docs/eval).
eval: $(STAMP)
	$(BIN)/edge4k eval -o out/eval

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf out build dist *.egg-info
