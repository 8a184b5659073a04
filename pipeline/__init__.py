"""MNIST pipeline library: pure functions and small classes, no Luigi imports.

The Luigi tasks in ``tasks/`` load their inputs, call into this package, and
write the results through :mod:`pipeline.store`.

Importing this package first picks OpenBLAS's GEMM kernels for the CPU (:mod:`pipeline.blas`):
that must happen before anything imports NumPy.
"""
from pipeline.blas import choose_gemm_kernels

choose_gemm_kernels()
