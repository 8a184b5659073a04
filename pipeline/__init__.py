"""MNIST pipeline library: pure functions and small classes, no Luigi imports.

The Luigi tasks in ``tasks/`` load their inputs, call into this package, and
write the results through :mod:`pipeline.store`.
"""
