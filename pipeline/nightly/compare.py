"""Two nights side by side, and the regression gate that decides whether a night passes.

A night's record (``nightly.json``) holds its metrics, its fingerprint (the code digest of
every task, the parameters, the content hashes of the input data) and its mirror health.
"""
from __future__ import annotations

import math
from typing import Any

from pipeline.nightly.health import health_changes

Z95 = 1.959963984540054


def accuracy_delta(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, float]:
    """Difference of two test accuracies with a 95% interval.

    The interval treats the two runs as independent samples (Wald); on one shared test set the
    errors are correlated, so this interval is conservative (wider than a paired one).
    """
    p1, n1 = float(current["test_accuracy"]), int(current["n_test"])
    p0, n0 = float(previous["test_accuracy"]), int(previous["n_test"])
    delta = p1 - p0
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    return {"delta": delta, "ci95": [delta - Z95 * se, delta + Z95 * se]}


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def compare_nights(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """What changed since ``previous``: the model (bit for bit) and why, accuracy, time, mirrors."""
    if previous is None:
        return {"previous_date": None, "note": "no earlier night to compare with"}
    cur_fp, old_fp = current["fingerprint"], previous["fingerprint"]
    why = {
        "code": _changed(old_fp.get("code", {}), cur_fp.get("code", {})),
        "parameters": _changed(old_fp.get("params", {}), cur_fp.get("params", {})),
        "data": _changed(old_fp.get("data", {}), cur_fp.get("data", {})),
    }
    same_model = current["metrics"]["params_sha256"] == previous["metrics"]["params_sha256"]
    old_params, new_params = old_fp.get("params", {}), cur_fp.get("params", {})
    return {
        "previous_date": previous["date"],
        "same_model": same_model,
        "why": why,
        "parameter_values": {k: [old_params.get(k), new_params.get(k)] for k in why["parameters"]},
        "accuracy": accuracy_delta(current["metrics"], previous["metrics"]),
        "train_seconds_delta": current["metrics"]["train_seconds"] - previous["metrics"]["train_seconds"],
        "wall_seconds_delta": current.get("wall_seconds", 0.0) - previous.get("wall_seconds", 0.0),
        "mirror_changes": health_changes(previous.get("mirror_health"), current["mirror_health"]),
    }


def gate_failures(current: dict[str, Any], previous: dict[str, Any] | None, *, tolerance: float,
                  baseline: float | None) -> list[str]:
    """Every reason the night must fail, as sentences; empty when it passes.

    Fails on: test accuracy below the previous night's or the pinned baseline by more than
    ``tolerance``; a mirror serving content that does not match the pinned hashes; a recheck
    that retrained different parameters although code, parameters and data were unchanged.
    """
    failures = list(current["mirror_health"].get("failures", []))
    acc = float(current["metrics"]["test_accuracy"])
    if previous is not None:
        before = float(previous["metrics"]["test_accuracy"])
        if acc < before - tolerance:
            failures.append(f"test accuracy {acc:.2%} dropped below the previous night's {before:.2%} "
                            f"({previous['date']}) by more than the tolerance of {100 * tolerance:.2f} points "
                            "([nightly] tolerance)")
    if baseline is not None and acc < baseline - tolerance:
        failures.append(f"test accuracy {acc:.2%} is below the pinned baseline {baseline:.2%} ([nightly] "
                        f"baseline_accuracy) by more than the tolerance of {100 * tolerance:.2f} points")
    recheck = current.get("recheck")
    for model in (recheck or {}).get("members", []):
        if model["params_sha256"] != model["cached_params_sha256"]:
            which = f"ensemble member {model['member']}" if len(recheck["members"]) > 1 else "the model"
            failures.append(f"determinism break: retraining {which} from scratch on {model['threads']} BLAS "
                            f"thread(s) gave params_sha256 {model['params_sha256']} but the cached one, made by "
                            f"the same code, parameters and data, has {model['cached_params_sha256']}")
    return failures
