"""An ensemble of K trained models scored as one classifier: the mean of their probabilities.

Members differ only in their training seed (the same architecture, settings and
training split), so their errors differ mostly by chance and averaging removes some
of them. The ensemble is evaluated exactly like a single model
(:func:`pipeline.evaluate.stage.scored_stage` on the averaged probabilities), plus a
table and a figure of each member against the ensemble. One member is a single model:
:func:`ensemble_stage` of one member is :func:`pipeline.evaluate.stage.evaluate_stage`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pipeline.progress import ProgressFn, ignore

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.result import StageResult

MEMBER_COLUMNS = ["member", "seed", "best_epoch", "best_val_accuracy", "test_accuracy", "test_errors",
                  "train_seconds", "params_sha256"]
SHA_CHARS = 12  # of a parameters digest, in the members table


@dataclass(frozen=True)
class Member:
    """One trained member: its model state (the training stage's ``model`` artifact) and the
    summary of its training (``seed``, ``best_epoch``, ``best_val_accuracy``, ``train_seconds``, ...)."""

    model_state: dict[str, Any]
    training: dict[str, Any]


def average_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble's probabilities: the mean of K members' (N, C) arrays, as (N, C) float32.

    Summed in float64, so the result does not depend on the order of the members beyond the
    last float32 bit; one member's array comes back unchanged, bit for bit.
    """
    if len(probs) == 0:
        raise ValueError("an ensemble needs at least one member")
    shapes = {np.shape(p) for p in probs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"members' probabilities must all be (N, C) arrays of one shape, got {sorted(shapes)}")
    return np.mean(np.stack(probs), axis=0, dtype=np.float64).astype(np.float32)


def ensemble_digest(shas: Sequence[str]) -> str:
    """The parameters digest of an ensemble: sha256 over its members' digests in member order
    (one member: that member's own digest, so a one-model ensemble is named like the model)."""
    if len(shas) == 1:
        return shas[0]
    return hashlib.sha256("\n".join(shas).encode("ascii")).hexdigest()


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows of ``probs`` (N, C) whose largest entry is at ``labels`` (N,)."""
    return float((np.asarray(probs).argmax(axis=1) == labels).mean())


def member_rows(members: Sequence[Member], test_probs: Sequence[np.ndarray], labels: np.ndarray,
                shas: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON-able record per member: the columns of :data:`MEMBER_COLUMNS` (digest in full) and epochs_run."""
    rows = []
    for i, (member, probs, sha) in enumerate(zip(members, test_probs, shas)):
        t = member.training
        wrong = int((probs.argmax(axis=1) != labels).sum())
        rows.append({"member": i, "seed": int(t["seed"]), "best_epoch": int(t["best_epoch"]),
                     "epochs_run": int(t["epochs_run"]), "best_val_accuracy": float(t["best_val_accuracy"]),
                     "test_accuracy": (len(labels) - wrong) / len(labels), "test_errors": wrong,
                     "train_seconds": float(t["train_seconds"]), "params_sha256": sha})
    return rows


def members_table(rows: Sequence[dict[str, Any]], ensemble: dict[str, Any]) -> "pd.DataFrame":
    """Members and, last, the ensemble as rows of :data:`MEMBER_COLUMNS` (digests shortened).

    ``ensemble`` holds the ensemble's test_accuracy, test_errors, val_accuracy and params_sha256;
    its seed cell names the seed range, its best epoch is blank (each member chose its own) and
    its training seconds are the members' total.
    """
    import pandas as pd

    seeds = [r["seed"] for r in rows]
    last = {"member": "ensemble", "seed": f"{min(seeds)}–{max(seeds)}", "best_epoch": np.nan,
            "best_val_accuracy": ensemble["val_accuracy"], "test_accuracy": ensemble["test_accuracy"],
            "test_errors": ensemble["test_errors"], "train_seconds": sum(r["train_seconds"] for r in rows),
            "params_sha256": ensemble["params_sha256"]}
    records = [{c: r[c] for c in MEMBER_COLUMNS} for r in rows] + [last]
    frame = pd.DataFrame(records, columns=MEMBER_COLUMNS)
    frame["params_sha256"] = frame["params_sha256"].str[:SHA_CHARS]
    return frame


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _within(progress: ProgressFn, start: float, stop: float) -> ProgressFn:
    """``progress`` of a part of the work that spans [start, stop] of the whole."""
    return lambda fraction, message: progress(start + (stop - start) * fraction, message)


def ensemble_stage(members: Sequence[Member], data: dict[str, np.ndarray],
                   progress: ProgressFn = ignore, tta: int = 0) -> "StageResult":
    """Score every member on the test and validation splits of ``data`` (the prepared splits:
    x_* float32 (N, 1, 28, 28), y_* int64 (N,), test_source_index), average their probabilities
    and evaluate the average as one classifier.

    The result is :func:`~pipeline.evaluate.stage.evaluate_stage`'s, with the ensemble's
    numbers, and: summary ``ensemble`` (K), ``members`` (:func:`member_rows`) and
    ``val_accuracy`` (the ensemble's, on the validation split); a members table and figure
    first; the first-layer figures of member 0; and the artifact member_predictions
    {"probabilities" (K, N, 10) float32, "labels" (N,), "val_probabilities" (K, N_val, 10) float32,
    "val_labels" (N_val,), "seeds" int64 (K,), "params_sha256" [K]}. One member: exactly the single
    model's evaluation.

    With ``tta`` > 0 every member is scored with test-time augmentation (:mod:`pipeline.evaluate.tta`)
    before the average, and the summary's ``tta`` record has the ensemble's validation accuracy with
    and without it (:func:`pipeline.evaluate.stage.with_tta`).
    """
    from pipeline.evaluate import figures
    from pipeline.evaluate.stage import NOTE, evaluate_stage, scored_stage, with_tta
    from pipeline.evaluate.tta import predict, tta_record
    from pipeline.nn import model_from_state, sha256_arrays
    from pipeline.result import Figure, Table

    x_test, y_test, source = data["x_test"], data["y_test"], data["test_source_index"]
    if len(members) == 1:
        return evaluate_stage(model_from_state(members[0].model_state), x_test, y_test, source, progress=progress,
                              tta=tta, val=(data["x_val"], data["y_val"]))
    k = len(members)
    test_probs, val_probs, shas, first = [], [], [], None
    test_plain, val_plain = [], []  # without TTA (the same arrays when tta is 0)
    for i, member in enumerate(members):
        progress(0.8 * i / k, f"scoring member {i} of {k} (seed {member.training['seed']})")
        model = model_from_state(member.model_state)  # one network in memory at a time (and member 0's)
        for probs, plain, x in ((test_probs, test_plain, x_test), (val_probs, val_plain, data["x_val"])):
            with_, without = predict(model, x, tta)  # (N, 10) float32 each
            probs.append(with_)
            plain.append(without)
        shas.append(sha256_arrays(model.parameters()))
        first = model if first is None else first
    probs = average_probabilities(test_probs)
    result = scored_stage(probs, first, x_test, y_test, source, progress=_within(progress, 0.8, 1.0))
    if tta:
        result = with_tta(result, tta_record(tta, (average_probabilities(val_probs), average_probabilities(val_plain)),
                                             data["y_val"], average_probabilities(test_plain), y_test))

    rows = member_rows(members, test_probs, y_test, shas)
    s = result.summary
    s.update(model_params_sha256=ensemble_digest(shas), ensemble=k, members=rows,
             val_accuracy=accuracy(average_probabilities(val_probs), data["y_val"]), note=NOTE)
    ens = {"test_accuracy": s["test_accuracy"], "test_errors": s["n_errors"], "n_test": s["n_test"],
           "ci95": s["ci95"], "val_accuracy": s["val_accuracy"], "params_sha256": s["model_params_sha256"]}
    best = max(rows, key=lambda r: r["test_accuracy"])
    headline = list(result.headline)
    headline[2:2] = [("Members", f"{k} (seeds {rows[0]['seed']}–{rows[-1]['seed']})"),
                     ("Best member", f"{_pct(best['test_accuracy'])} (seed {best['seed']})"),
                     ("Mean member", _pct(float(np.mean([r["test_accuracy"] for r in rows])))),
                     ("Ensemble validation accuracy", _pct(s["val_accuracy"]))]
    seed0 = f"Member 0 (seed {rows[0]['seed']}): "
    figs = [Figure("members", "Members and ensemble", figures.members_caption(rows, ens),
                   figures.members_figure(rows, ens))]
    figs += [dataclasses.replace(f, caption=seed0 + f.caption) if f.name in ("filters", "feature_maps") else f
             for f in result.figures]
    artifacts = dict(result.artifacts)
    artifacts["member_predictions"] = {
        "probabilities": np.stack(test_probs), "labels": y_test,
        "val_probabilities": np.stack(val_probs), "val_labels": data["y_val"],
        "seeds": np.array([r["seed"] for r in rows], dtype=np.int64), "params_sha256": shas}
    return dataclasses.replace(
        result, title=f"Evaluation: ensemble of {k} members", headline=headline, figures=figs,
        tables=[Table("members", "Members and ensemble", members_table(rows, ens))] + result.tables,
        artifacts=artifacts)
