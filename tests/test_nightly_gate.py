"""The nightly regression gate (pipeline.nightly.compare.gate_failures) on hand-made night records."""
from __future__ import annotations

from pipeline.nightly.compare import gate_failures


def night(accuracy: float, recheck: dict | None = None) -> dict:
    return {"date": "2026-11-24", "metrics": {"test_accuracy": accuracy}, "mirror_health": {"failures": []},
            "recheck": recheck}


def recheck(*pairs: tuple[str, str], threads: int = 1) -> dict:
    members = [{"member": m, "threads": threads, "params_sha256": new, "cached_params_sha256": old}
               for m, (new, old) in enumerate(pairs)]
    return {"members": members, "seconds": 1.0, "identical": all(new == old for new, old in pairs)}


def test_a_night_as_good_as_the_last_with_identical_retrained_members_passes():
    current = night(0.995, recheck(("a" * 64, "a" * 64), ("b" * 64, "b" * 64)))
    assert gate_failures(current, night(0.995), tolerance=0.002, baseline=None) == []


def test_a_member_that_retrains_to_other_bits_fails_the_night_and_is_named():
    current = night(0.995, recheck(("a" * 64, "a" * 64), ("c" * 64, "b" * 64), threads=1))
    (failure,) = gate_failures(current, None, tolerance=0.002, baseline=None)
    assert failure.startswith("determinism break: retraining ensemble member 1 from scratch on 1 BLAS thread(s)")
    assert "c" * 64 in failure and "b" * 64 in failure


def test_a_single_model_is_called_the_model():
    (failure,) = gate_failures(night(0.99, recheck(("c" * 64, "b" * 64), threads=2)), None, tolerance=0.002,
                               baseline=None)
    assert "retraining the model from scratch on 2 BLAS thread(s)" in failure


def test_accuracy_below_the_previous_night_or_the_baseline_by_more_than_the_tolerance_fails():
    assert gate_failures(night(0.990), night(0.995), tolerance=0.002, baseline=None)[0].startswith(
        "test accuracy 99.00% dropped below the previous night's 99.50% (2026-11-24)")
    assert gate_failures(night(0.994), night(0.995), tolerance=0.002, baseline=None) == []
    assert "below the pinned baseline 99.50%" in gate_failures(night(0.99), None, tolerance=0.002, baseline=0.995)[0]
