"""Failure notification beyond Luigi's own mail: a JSON POST to a webhook, from Luigi's event handlers.

Failure mail needs nothing here: Luigi's worker sends it through ``[email]`` and
``[smtp]`` in luigi.cfg (see the README). The webhook is configured as::

    [notify]
    webhook_url = https://chat.example.com/hooks/abc
"""
from __future__ import annotations

import datetime as dt
import socket

import luigi


class notify(luigi.Config):  # noqa: N801 - Luigi names config sections after the class
    """``[notify]``: where failures are posted (empty: nowhere)."""

    webhook_url = luigi.Parameter(default="", description="URL that receives a JSON POST when a task fails")
    timeout = luigi.FloatParameter(default=10.0, description="seconds to wait for the webhook")


def failure_payload(task: luigi.Task, exception: BaseException) -> dict:
    """What a failure POST says: which task, why, where and when."""
    return {
        "event": "task_failed",
        "task": task.task_family,
        "task_id": task.task_id,
        "reason": f"{type(exception).__name__}: {exception}",
        "parameters": task.to_str_params(only_significant=True),
        "host": socket.gethostname(),
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "text": f"{task.task_family} failed on {socket.gethostname()}: {exception}",  # for chat tools
    }


@luigi.Task.event_handler(luigi.Event.FAILURE)
def post_failure(task: luigi.Task, exception: BaseException) -> None:
    url = notify().webhook_url
    if url:
        from pipeline.webhook import post_json

        post_json(url, failure_payload(task, exception), timeout=notify().timeout)
