# Every target wraps an `edge4k` CLI command. `make demo` runs the trained default
# checkpoint shipped in models/weights/. `make demo` and `make test` set
# themselves up on a fresh machine (a venv in .venv with the pinned dependencies).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The locked environment (every transitive package pinned with its hashes; `make lock` writes
# both files from pyproject.toml): Linux x86-64, or macOS arm64 for a Core ML user.
LOCK   ?= requirements/lock-$(if $(filter Darwin,$(shell uname -s)),macos-arm64,linux-x86_64).txt
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | cksum | cut -d' ' -f1)
# Python never puts the working directory (the repository root) first on sys.path, in make's
# commands and every process they start: the root folders kernels/, models/, runtime/, ... are
# also names of published packages, and must only be importable as edge4k.*.
export PYTHONSAFEPATH := 1
# The CLI and what it needs; tests point these at their own interpreter.
EDGE4K ?= $(BIN)/edge4k
OUT    ?= out
DEPS   ?= $(STAMP)

# Device profiling: make android-xnnpack | android-qnn [SOC=SM8650] | ios-coreml
# Variables (all optional): INPUT (RAW file; default the embedded sample), PRESET,
# QUANT, TILE, OVERLAP, BATCH, LOOK (natural|neutral), RUNS, WARMUP, THREADS, SERIAL (or ANDROID_SERIAL),
# RUNNER (a prebuilt phone runner), ARTIFACTS (skip compiling), QNN_LIBS (android-qnn: the folder
# with ONNX Runtime for Android and QAIRT's libraries, or EDGE4K_QNN_LIBS), DRY_RUN=1 (print
# every command, still compile). Outputs land in out/<target>/ (OUT=DIR for another folder).
SOC    ?= SM8650
RUNS   ?= 10
WARMUP ?= 3
opt     = $(if $($(1)),--$(2) $($(1)))
PROFILE_FLAGS = $(INPUT) --runs $(RUNS) --warmup $(WARMUP) $(call opt,PRESET,preset) $(call opt,QUANT,quant) \
	$(call opt,LOOK,look) $(call opt,TILE,tile) $(call opt,OVERLAP,overlap) $(call opt,BATCH,batch) $(call opt,THREADS,threads) \
	$(call opt,SERIAL,serial) $(call opt,RUNNER,runner) $(call opt,ARTIFACTS,artifacts) $(call opt,QNN_LIBS,qnn-libs) \
	$(if $(filter-out 0,$(DRY_RUN)),--dry-run)

.PHONY: setup lock demo eval train distill research test lint mutation clean arm64 android-xnnpack android-qnn ios-coreml

setup: $(STAMP)

# Hash-checked install of the lock (pip refuses any file whose hash is not in it, and any
# dependency the lock lacks), then this repository itself, editable, without touching the lock.
$(STAMP): pyproject.toml $(LOCK)
	sh requirements/prereqs.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@# The CPU stages' C++ kernels (kernels/cpp.py); without them the host pipeline runs their
	@# Python twins and says so.
	$(BIN)/edge4k build-runner --kernels-only || echo "warning: C++ kernels not built; the Python ones will run"
	@command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null || echo "note: the arm64 runner \
	tests skip; to run them: dpkg --add-architecture arm64 && apt-get update && apt-get install \
	crossbuild-essential-arm64 qemu-user zlib1g-dev:arm64 libstdc++6:arm64"
	rm -f $(VENV)/.installed-* && touch $@

# Regenerates both locks from pyproject.toml with uv (pinned here; it runs from its own venv in
# build/). TORCH_WHEELS is where the CPU build of torch lies (PyPI's torch for Linux is the CUDA
# build); requirements/constraints.txt holds what the resolver must be told by hand.
UV_VERSION   ?= 0.13.9
TORCH_WHEELS ?= /opt/wheels
UV            = build/uv/bin/uv
LOCK_FLAGS    = -c requirements/constraints.txt --generate-hashes --python-version 3.11 \
	--index-strategy unsafe-best-match --custom-compile-command "make lock" --quiet
lock:
	test -x $(UV) || { $(PYTHON) -m venv build/uv && build/uv/bin/pip install --quiet uv==$(UV_VERSION); }
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) --python-platform x86_64-manylinux_2_35 \
		--find-links $(TORCH_WHEELS) -o requirements/lock-linux-x86_64.txt
	MACOSX_DEPLOYMENT_TARGET=14.0 $(UV) pip compile pyproject.toml $(foreach e,test executorch litert coreml train research native,--extra $(e)) \
		$(LOCK_FLAGS) --python-platform aarch64-apple-darwin -o requirements/lock-macos-arm64.txt

demo: $(STAMP)
	$(BIN)/edge4k run -o out/demo.png --profile out/demo.profile.json --tile 256 --overlap 32 --runs 3 --warmup 1

# Image quality of the shipped checkpoint against classical and learned converters, each finished
# like the ground truth, on the bundled held-out photos, Kodak24 and McMaster18 (DATA/eval, see
# datasets/DATA.md), and the robustness sweep. docs/eval/ was written by the same commands.
eval: $(STAMP)
	$(BIN)/edge4k eval --set held-out -o $(OUT)/eval
	$(BIN)/edge4k eval --set kodak24 --data $(DATA) -o $(OUT)/eval
	$(BIN)/edge4k eval --set mcmaster18 --data $(DATA) -o $(OUT)/eval
	$(BIN)/edge4k eval --sweep -o $(OUT)/eval

# The shipped checkpoint's recipe (docs/MODEL_CARD.md, docs/training/summary.json): synthetic
# captures of the photographs in DATA/shards-gpu (`edge4k data build ... --codec jpeg`, see
# datasets/DATA.md), crops of 256, batch 48, lr 2e-3, an 8.5-minute budget. It was run once on
# one H200 GPU with 14 data workers (7,730 steps); on a 2-core CPU it runs, far slower: add
# STEPS=7730 to fix the schedule by steps instead of time and let it take what it takes.
# The default preset is model v3 (e4k-v3-f16); on a lent GPU, WARM=models/weights/e4k-s-f16.safetensors
# starts it from every v2 tensor that fits, as its shipped CPU run did; PRESET=e4k-s-f16 is v2's own
# recipe; RESUME=1 OUT=<folder of a run to continue>.
DATA        ?= data
TRAIN_MIN   ?= 8.5
WORKERS     ?= 14
train: $(STAMP)
	$(BIN)/edge4k train --preset $(or $(PRESET),e4k-v3-f16) --data $(DATA)/shards-gpu --budget-minutes $(TRAIN_MIN) \
		--batch 48 --crop 256 --lr 2e-3 --workers $(WORKERS) --checkpoint-every 1000 --log-every 50 \
		$(call opt,STEPS,steps) $(call opt,WARM,warm-start) $(if $(filter-out 0,$(RESUME)),--resume) --out $(OUT)/train

# One-step distillation (docs/MODEL_CARD.md, "Distillation"): a flow teacher in the shipped
# model's latent space, the one-step student distilled from it, and the comparison.
TEACHER_MIN ?= 25
DISTILL_MIN ?= 15
BASE        ?= models/weights/e4k-s-f16.safetensors
distill: $(STAMP)
	$(BIN)/edge4k train-teacher --base $(BASE) --data $(DATA)/shards --budget-minutes $(TEACHER_MIN) --crop 128 \
		--ae-steps 400 --threads 1 --out $(OUT)/teacher
	$(BIN)/edge4k distill --teacher $(OUT)/teacher/teacher.safetensors --data $(DATA)/shards \
		--budget-minutes $(DISTILL_MIN) --crop 128 --threads 1 --out $(OUT)/student
	$(BIN)/edge4k eval --teacher $(OUT)/teacher/teacher.safetensors --student $(OUT)/student/model.safetensors \
		--checkpoint $(BASE) -o $(OUT)/distill

# The research report: every study, then docs/RESEARCH.md.
research: $(STAMP)
	$(BIN)/edge4k study all

test: $(DEPS)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The static checks alone (also part of `make test`): the layer and backend-independence contracts
# (import-linter runs on a wheel-layout copy, since the repository's folders map to edge4k.* only
# through the editable install), no import cycles, ruff and mypy.
lint: $(DEPS)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py tests/test_code_checks.py

# The runner, libedge4k and the native kernels built with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake's EDGE4K_SANITIZE) into build/native-sanitize, then the native tests (tiny preset) and the
# short fuzz run against that build, with the sanitizer runtimes preloaded into Python for the
# libraries it loads. Any sanitizer report fails the run. The long fuzz run: README, "Reliability".
SANITIZE_BUILD ?= build/native-sanitize
SANITIZE_TESTS ?= tests/test_native_kernels.py tests/test_libedge4k.py tests/test_native_runner.py tests/test_fuzz_native.py
.PHONY: sanitize
sanitize: $(DEPS)
	$(EDGE4K) build-runner --sanitize -o $(SANITIZE_BUILD)
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86 \
	EDGE4K_TEST_NATIVE_BUILD=$(abspath $(SANITIZE_BUILD)) EDGE4K_KERNELS_LIB=$(abspath $(SANITIZE_BUILD))/libedge4k_kernels.so \
	$(BIN)/python -m pytest -p no:cacheprovider $(SANITIZE_TESTS)

# Mutation testing (cosmic-ray; not part of `make test`): the score per module of how
# many deliberately broken versions its tests catch. MUTATE lists MODULE=TEST[,TEST]
# pairs; SURVIVORS=1 prints each surviving mutant's diff; SAMPLE=N tests a fixed random N
# mutants per module (score with a 95% interval). Sessions resume from build/mutation/.
MUTATE ?= runtime/profile.py=tests/test_profile.py
mutation: $(STAMP)
	$(BIN)/python tests/mutation.py $(MUTATE) $(if $(filter-out 0,$(SURVIVORS)),--survivors) $(if $(SAMPLE),--sample $(SAMPLE))

# The phone's runner, libedge4k.so and kernels cross-compiled for arm64 Linux into
# build/native-aarch64-linux, against the aarch64 executorch wheel (fetched into
# build/wheels-aarch64); run here with qemu-aarch64. Needs Debian's crossbuild-essential-arm64,
# qemu-user, zlib1g-dev:arm64 and libstdc++6:arm64 (README, "Profiling on a phone"); `make setup`
# does not.
arm64: $(DEPS)
	$(EDGE4K) build-runner --target aarch64-linux

android-xnnpack: $(DEPS)
	$(EDGE4K) profile --target $@ --device android -o $(OUT)/$@ $(PROFILE_FLAGS)

android-qnn: $(DEPS)
	$(EDGE4K) profile --target $@ --device android -o $(OUT)/$@ --soc $(SOC) $(PROFILE_FLAGS)

ios-coreml: $(DEPS)
	$(EDGE4K) profile --target $@ --device ios -o $(OUT)/$@ $(PROFILE_FLAGS)

clean:
	rm -rf out build dist *.egg-info
