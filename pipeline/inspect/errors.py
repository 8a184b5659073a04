"""The one error the inspection helpers raise for things that are not there (a run, a key, a directory)."""


class NotFound(LookupError):
    """A run id, a key, a file or a directory names nothing; the message says where it looked and what is near."""
