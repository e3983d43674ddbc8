"""A short run of the native fuzzer (tests/fuzz/fuzz_native.py) on the fake-phone run's build:
30 mutated manifests, .pte programs and frame sidecars, none of which may crash the runner
(under `make sanitize`, none may trip AddressSanitizer or UndefinedBehaviorSanitizer either).
The long run and its counts: README, "Reliability"."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from fuzz_native import KINDS, fuzz  # noqa: E402

COUNT = 30


@pytest.mark.parametrize("kind", KINDS)
def test_short_fuzz_run_does_not_crash_the_runner(phone_run, kind):
    # A damaged .pte here always meets the manifest's digest; the long run also gives half of them
    # their own digest, reaching the XNNPACK delegate's own parser (README, "Reliability").
    tally = fuzz(phone_run.runner, phone_run.out / "build", kind, COUNT, seed=0, own_digest=0.0)
    assert tally.crashes == [], tally.crashes
    assert sum(tally.counts.values()) == COUNT and tally.counts["refused"] > 0
