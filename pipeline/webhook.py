"""A JSON POST to a chat or monitoring webhook: how an unattended run tells someone it failed."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def post_json(url: str, payload: dict[str, Any], timeout: float = 10.0) -> bool:
    """POST ``payload`` as JSON to ``url``; True on a 2xx answer.

    A webhook that is down must not turn a finished run into a failed one, nor hide the
    original failure: problems are logged, never raised.
    """
    import requests

    try:
        response = requests.post(url, json=payload, timeout=timeout)
    except requests.RequestException as exc:
        log.warning("webhook %s not reached: %s", url, exc)
        return False
    if not response.ok:
        log.warning("webhook %s answered HTTP %d: %s", url, response.status_code, response.text[:200])
        return False
    return True
