"""What the command exits with: 0 ok, 1 usage or not found, 2 integrity failure."""
from __future__ import annotations

OK, USAGE, INTEGRITY = 0, 1, 2


class UsageError(Exception):
    """A wrong command line (unknown flag, task or option); exits with :data:`USAGE`."""
