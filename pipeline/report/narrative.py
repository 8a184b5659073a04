"""The few sentences a run's page opens with: what ran, the result, and how it compares.

Every sentence is computed from the run's metrics record, its training summary and
its comparisons (:func:`pipeline.report.comparison.compare_with_references`). A
paragraph is a list of parts, each {"text"} or {"text", "href"} (a link to another
run's page), so the template escapes the text and draws the links.
"""
from __future__ import annotations

from typing import Any

from pipeline.evaluate.tta import views
from pipeline.inspect.mcnemar import ALPHA
from pipeline.nn.train import ELASTIC_SIGMA
from pipeline.report.comparison import DEFINITIONS, ROLE_NAMES, moment, parameter_text, run_link, significance

MAX_PARAMETERS = 3  # parameter changes named in a sentence; the comparison section lists them all


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``10,000 images``: the count with the word in the right number."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _text(text: str) -> dict[str, str]:
    return {"text": text}


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def what_ran(metrics: dict[str, Any], training: dict[str, Any]) -> str:
    """One sentence: preset, epochs, seed, training images, augmentation and the recipe levers that were on
    (label smoothing, weight averaging, one-cycle), number of models."""
    params = metrics.get("parameters", {})
    n_train, n_val = training.get("n_train"), training.get("n_val")
    limit = metrics.get("train_limit") or 0
    source = f"the first {limit:,} training images" if limit else "all training images"
    split = (f" ({n_train:,} to train on, {n_val:,} for validation)"
             if isinstance(n_train, int) and isinstance(n_val, int) else "")
    recipe = [text.format(float(params[key])) for key, text in (
        ("label_smoothing", "label smoothing {:g}"), ("ema_decay", "a moving average of the weights (decay {:g})"))
        if params.get(key)]
    if params.get("schedule") == "onecycle":
        recipe.append("the one-cycle schedule")
    augment = params.get("augment")
    if augment:
        extra = []
        if params.get("max_scale"):
            extra.append(f"scaled by up to ±{100 * float(params['max_scale']):g}%")
        if params.get("elastic_alpha"):  # sigma is left out of the parameters at its default
            sigma = float(params.get("elastic_sigma", ELASTIC_SIGMA))
            extra.append(f"elastic distortion, alpha {float(params['elastic_alpha']):g}, sigma {sigma:g} px")
        recipe.insert(0, "augmentation" + (f" ({', '.join(extra)})" if extra else ""))
    used = f", with {_and(recipe)}" if recipe else ""
    if augment is False:
        used = ", without augmentation" + used
    models = metrics.get("ensemble") or 1
    if models > 1:
        seeds = [m.get("seed") for m in metrics.get("members", [])]
        who = f"an ensemble of {models} models" + (f" (seeds {seeds[0]}–{seeds[-1]})" if seeds else "")
    else:
        who = f"one model (seed {metrics['seed']})"
    epochs = plural(int(metrics["epochs"]), "epoch")
    return (f"This run trained {who} with the {metrics['preset']} preset for {epochs} on {source}{split}"
            f"{used}.")


def result(metrics: dict[str, Any]) -> str:
    """One sentence: the test accuracy with its 95% interval and the count of mistakes."""
    n_test, errors = metrics.get("n_test"), metrics.get("test_error_count")
    where = f" on the {plural(n_test, 'test image')}" if n_test else ""
    ci = metrics.get("test_accuracy_ci95")
    interval = f" (95% interval {_pct(ci[0])}–{_pct(ci[1])})" if ci else ""
    mistakes = f", {plural(errors, 'mistake')}" if errors is not None else ""
    tta = int(metrics.get("parameters", {}).get("tta") or 0)
    averaged = f", averaging {len(views(tta))} shifted views of each image" if tta else ""
    return f"It scored {_pct(metrics['test_accuracy'])}{where}{averaged}{interval}{mistakes}."


def parameter_phrase(changes: list[dict[str, Any]]) -> str:
    """``seed 2 → 1, augment true → false and 2 more parameters``, or ``the same parameters``."""
    if not changes:
        return "the same parameters"
    named = [f"{c['name']} {parameter_text(c['a'])} → {parameter_text(c['b'])}" for c in changes[:MAX_PARAMETERS]]
    more = len(changes) - MAX_PARAMETERS
    if more > 0:
        return ", ".join(named) + f" and {plural(more, 'more parameter')}"
    return ", ".join(named[:-1]) + (" and " if len(named) > 1 else "") + named[-1]


def change_phrase(this_acc: float, other_acc: float) -> str:
    """``3.12 points higher (69.70% → 72.81%)``, or ``the same test accuracy (72.81%)``."""
    points = 100 * (this_acc - other_acc)
    if round(points, 2) == 0:
        return f"the same test accuracy ({_pct(this_acc)})"
    return f"{abs(points):.2f} points {'higher' if points > 0 else 'lower'} ({_pct(other_acc)} → {_pct(this_acc)})"


def comparison_paragraph(metrics: dict[str, Any], comparison: dict[str, Any], report_file: str
                         ) -> list[dict[str, str]]:
    """The parts of one paragraph comparing this run with one reference run (previous, best or both)."""
    other = comparison["other"]
    roles = comparison["roles"]
    name = ROLE_NAMES[tuple(roles)]
    parts = [_text(f"Against {name}, "), {"text": other["run_id"], "href": run_link(other["run_id"], report_file)},
             _text(f" (rendered {moment(other['created'])}; {parameter_phrase(comparison['parameters'])}): "
                   f"{change_phrase(metrics['test_accuracy'], other['test_accuracy'])}. ")]
    if comparison["same_model"]:
        parts.append(_text("It is the same trained model (equal parameter digests). "))
    parts.append(_text(significance(comparison)))
    return parts


def standing(metrics: dict[str, Any], comparisons: list[dict[str, Any]]) -> str:
    """Where this run stands against the best run so far, in one sentence ("" without other runs)."""
    best = next((c for c in comparisons if "best" in c["roles"]), None)
    if best is None:
        return ""
    points = 100 * (metrics["test_accuracy"] - best["other"]["test_accuracy"])
    if points > 0:
        return "This run has the highest test accuracy of this report directory so far."
    if round(points, 2) == 0:
        return "This run ties the best test accuracy of this report directory so far."
    return ""


def narrative(metrics: dict[str, Any], training: dict[str, Any], comparisons: list[dict[str, Any]],
              n_other_runs: int | None, report_file: str) -> dict[str, Any]:
    """The opening of the page: {"paragraphs": [[part, ...], ...], "definitions": str, "alone": str}
    ("alone" says why there is no comparison, or is empty).

    ``n_other_runs`` counts the runs the references were chosen from (those rendered before this one);
    None when the page was built without a report directory.
    """
    paragraphs = [[_text(what_ran(metrics, training) + " " + result(metrics))]]
    if n_other_runs is None or not comparisons:
        alone = ("This page was built outside a report directory: it is compared with no other run."
                 if n_other_runs is None else
                 "This is the first run in this report directory: there is no earlier run to compare it with.")
        return {"paragraphs": paragraphs + [[_text(alone)]], "definitions": "", "alone": alone}
    for comparison in comparisons:
        paragraphs.append(comparison_paragraph(metrics, comparison, report_file))
    ending = standing(metrics, comparisons)
    if ending:
        paragraphs.append([_text(ending)])
    definitions = (f"Compared with the {plural(n_other_runs, 'other run')} of this report directory when this page "
                   f"was rendered ({moment(metrics['created'])}); runs made later do not change it. Previous: "
                   f"{DEFINITIONS['previous']}. Best: {DEFINITIONS['best']}. Significance: McNemar's test on the "
                   f"two runs' test predictions, paired image by image, at the {ALPHA:g} level.")
    return {"paragraphs": paragraphs, "definitions": definitions, "alone": ""}
