"""Convolution and max-pooling kernels, one module per algorithm, each fast kernel
beside the slow, obviously correct reference (``*_ref``) the tests compare it with.

layout   memory layouts (which one travels between layers), output sizes, scratch reuse
im2col   im2col/col2im and the GEMM convolution (any stride/pad, optional fused ReLU + 2x2 pool)
blocked  the same GEMM convolution in blocks of output rows, so each column block stays in cache
pooling  max-pooling and the first-maximum gradient routing shared by every pool
spectral the stride-1 convolution by FFT (products of spectra per frequency)
phase    the phase-plane conv block: stride-1 conv + ReLU + 2x2 pool in long contiguous runs
parallel memory-bound loops split over the cores (disjoint outputs: same bits for any thread count)

Which kernel runs a given layer is decided in :mod:`pipeline.nn.fusion`.
"""
from pipeline.nn.kernels.blocked import (conv_rows_backward, conv_rows_backward_ref, conv_rows_forward,
                                         conv_rows_forward_ref)
from pipeline.nn.kernels.im2col import (col2im, conv2d_backward, conv2d_backward_ref, conv2d_forward,
                                        conv2d_forward_ref, dx_full_correlation, full_correlation_pays, im2col)
from pipeline.nn.kernels.layout import conv_output_size, from_chwn, from_cnhw, to_chwn, to_cnhw
from pipeline.nn.kernels.phase import (conv_block_backward, conv_block_backward_ref, conv_block_forward,
                                       conv_block_forward_ref)
from pipeline.nn.kernels.spectral import conv_fft_backward, conv_fft_forward
from pipeline.nn.kernels.pooling import (maxpool_backward, maxpool_backward_ref, maxpool_forward,
                                         maxpool_forward_ref, route_to_first_max)

__all__ = ["conv_rows_backward", "conv_rows_backward_ref", "conv_rows_forward", "conv_rows_forward_ref",
           "col2im", "conv2d_backward", "conv2d_backward_ref", "conv2d_forward", "conv2d_forward_ref",
           "dx_full_correlation", "full_correlation_pays", "im2col", "conv_output_size", "from_chwn", "from_cnhw", "to_chwn", "to_cnhw",
           "conv_fft_backward", "conv_fft_forward", "conv_block_backward", "conv_block_backward_ref", "conv_block_forward", "conv_block_forward_ref",
           "maxpool_backward", "maxpool_backward_ref", "maxpool_forward", "maxpool_forward_ref",
           "route_to_first_max"]
