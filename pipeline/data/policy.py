"""The cleaning policies: what the cleaning stage may do with flagged images (a setting, never a silent choice).

- ``keep``: audit and report only; the data and the flags table pass on untouched.
- ``flag`` (default): as ``keep``, and the per-image flags travel with the data so
  later stages can exclude or inspect them. Nothing is removed.
- ``drop``: remove flagged *training* images: extra copies of a duplicate (the
  first occurrence stays), every train image that also appears in test, near-empty
  images and outliers. The test split is never altered, because the test set is the
  benchmark: dropping from it would make accuracy incomparable with published figures.

This module imports nothing, so the task layer can read the choices cheaply.
"""
from __future__ import annotations

POLICIES = ("keep", "flag", "drop")
DEFAULT_POLICY = "flag"
POLICY_NOTES = {
    "keep": "Audit only: every image kept, flags reported but not carried with the data.",
    "flag": "Default: every image kept; flagged images are marked in the 'flags' table, nothing is removed.",
    "drop": "Flagged training images removed (duplicate copies after the first, train images also in test, "
    "near-empty images, outliers); the test split is never altered so the benchmark stays comparable.",
}


def check_policy(policy: str) -> str:
    """Return ``policy`` if it is one of :data:`POLICIES`, else raise naming the choices."""
    if policy not in POLICIES:
        raise ValueError(f"unknown cleaning policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return policy
