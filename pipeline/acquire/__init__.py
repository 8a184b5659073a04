"""Acquisition: the four MNIST files from an ordered list of mirrors, verified, and their IDX content.

One idea per module; import the one you need (``from pipeline.acquire import idx``):

    files    the MNIST file list: names, kinds, expected content, the files of each split
    mirrors  what a mirror is (http(s) URL, file:// URL or directory) and where a file is on it
    http     a session with retries, and a download that resumes with ``Range``
    meter    bytes, total and rate of one transfer, reported through a callback
    verify   whether a ``.gz`` file holds the expected content (streamed sha256, IDX diagnosis)
    fetch    failover across mirrors, accepting only verified bytes; ``fetch_all`` for the four files
    idx      IDX parsing and validation into arrays

This package imports nothing itself, so ``pipeline.acquire.files`` stays cheap for the task layer.
"""
