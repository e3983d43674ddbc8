# Every target wraps an `edge4k` CLI command. `make demo` and `make test` set
# themselves up on a fresh machine (a venv in .venv with the pinned dependencies).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: setup demo test android-qnn clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/edge4k run -o out/demo.png --profile out/demo.profile.json --tile 256 --overlap 32 --runs 3 --warmup 1

test: $(STAMP)
	$(BIN)/python -m pytest

# Qualcomm HTP build for one SoC (SOC=SM8550|SM8650|SM8750), then its accuracy pre-flight.
SOC ?= SM8650
android-qnn: $(STAMP)
	$(BIN)/edge4k compile --target android-qnn --soc $(SOC) -o build/android-qnn-$(SOC)
	$(BIN)/edge4k check --artifacts build/android-qnn-$(SOC)

clean:
	rm -rf out build dist *.egg-info
