"""Failure notification beyond Luigi's own mail: a JSON POST to a webhook, from Luigi's event handlers.

Failure mail needs nothing here: Luigi's worker sends it through ``[email]`` and
``[smtp]`` in luigi.cfg (see the README). The webhook is configured as::

    [notify]
    webhook_url = https://chat.example.com/hooks/abc

It is posted when a task fails (its run() raised: exit code task_failed) and when a task
cannot even be scheduled (a bad parameter or an error in complete() or requires(): exit code
scheduling_error), the two ways an unattended run ends without its result.
"""
from __future__ import annotations

import datetime as dt
import socket

import luigi

EVENTS = {
    "task_failed": "failed",
    "task_broken": "could not be scheduled",  # raised while Luigi checked it (parameters, requires, complete)
}


class notify(luigi.Config):  # noqa: N801 - Luigi names config sections after the class
    """``[notify]``: where failures are posted (empty: nowhere)."""

    webhook_url = luigi.Parameter(default="", description="URL that receives a JSON POST when a task fails")
    timeout = luigi.FloatParameter(default=10.0, description="seconds to wait for the webhook")


def failure_payload(task: luigi.Task, exception: BaseException, event: str = "task_failed") -> dict:
    """What a failure POST says: which task, what happened, why, where and when."""
    host = socket.gethostname()
    return {
        "event": event,
        "task": task.task_family,
        "task_id": task.task_id,
        "reason": f"{type(exception).__name__}: {exception}",
        "parameters": task.to_str_params(only_significant=True),
        "host": host,
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "text": f"{task.task_family} {EVENTS[event]} on {host}: {exception}",  # for chat tools
    }


def _post(task: luigi.Task, exception: BaseException, event: str) -> None:
    url = notify().webhook_url
    if url:
        from pipeline.webhook import post_json

        post_json(url, failure_payload(task, exception, event), timeout=notify().timeout)


@luigi.Task.event_handler(luigi.Event.FAILURE)
def post_failure(task: luigi.Task, exception: BaseException) -> None:
    _post(task, exception, "task_failed")


@luigi.Task.event_handler(luigi.Event.BROKEN_TASK)
def post_broken(task: luigi.Task, exception: BaseException) -> None:
    """requires() raised while the task was scheduled."""
    _post(task, exception, "task_broken")


@luigi.Task.event_handler(luigi.Event.DEPENDENCY_MISSING)
def post_unschedulable(task: luigi.Task) -> None:
    """complete() raised while the task was scheduled (a bad parameter, typically).

    Luigi reports that as a missing dependency and keeps only the formatted traceback, so the
    question is asked again to get the exception; a task that is merely incomplete (an external
    input not there yet) answers without raising and is not posted.
    """
    if not notify().webhook_url:
        return
    try:
        task.complete()
    except Exception as exc:  # noqa: BLE001 - whatever complete() raised is the reason to report
        _post(task, exc, "task_broken")
