"""A task's state from what its output says and what its inputs' states are, and the tree printed as text.

States: COMPLETE (up to date), PENDING (no output yet) and STALE (an output is
there but would be rebuilt: its own reasons, such as changed code or parameters or
a newer input, or an input that will itself be rebuilt). A node is a plain dict::

    {"task": family, "task_id": str, "status": str, "reasons": [str], "output": str | None,
     "params": {name: str}, "requires": [node, ...], "repeat": bool}

``repeat`` marks a task already shown higher up (its inputs are not listed again).
"""
from __future__ import annotations

from typing import Any

COMPLETE, PENDING, STALE = "COMPLETE", "PENDING", "STALE"


def classify(own: list[str], has_output: bool, inputs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """(state, reasons) of one task.

    ``own``: why the task's own output is out of date (empty when it is fine);
    ``has_output``: is any output there at all; ``inputs``: (name, state) of each required task.
    """
    if not has_output:
        return PENDING, own or ["missing output"]
    waiting = [f"input will be rebuilt: {name} is {state}" for name, state in inputs if state != COMPLETE]
    reasons = list(own) + waiting
    return (STALE, reasons) if reasons else (COMPLETE, [])


def classify_wrapper(inputs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """A task with no output of its own is complete when all it requires is."""
    waiting = [name for name, state in inputs if state != COMPLETE]
    return (PENDING, ["waits for " + ", ".join(waiting)]) if waiting else (COMPLETE, [])


def count(node: dict[str, Any], seen: set[str] | None = None) -> dict[str, int]:
    """{state: number of distinct tasks} over the tree."""
    seen = set() if seen is None else seen
    totals: dict[str, int] = {}
    if node["task_id"] not in seen:
        seen.add(node["task_id"])
        totals[node["status"]] = 1
    for child in node["requires"]:
        for state, n in count(child, seen).items():
            totals[state] = totals.get(state, 0) + n
    return totals


def render_tree(node: dict[str, Any], prefix: str = "", last: bool = True, root: bool = True) -> list[str]:
    """Lines of an indented tree, like ``luigi-deps-tree``: ``├── TrainCNN  COMPLETE  data/models/...``."""
    branch = "" if root else ("└── " if last else "├── ")
    output = f"  {node['output']}" if node.get("output") else ""
    label = f"{node['task']}  {node['status']}" + (" (shown above)" if node.get("repeat") else output)
    lines = [prefix + branch + label]
    inner = prefix + ("" if root else ("    " if last else "│   "))
    if not node.get("repeat"):
        lines += [inner + ("│   " if node["requires"] else "    ") + "- " + r for r in node["reasons"]]
        for i, child in enumerate(node["requires"]):
            lines += render_tree(child, inner, i == len(node["requires"]) - 1, root=False)
    return lines
