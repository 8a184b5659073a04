"""The exploration stage: statistics of the prepared splits and their figures.

    stats    class balance, mean/std images, intensities, PCA, class similarity (each fast kernel
             with its ``*_reference`` twin); ``explore_splits`` computes them all
    figures  one function per figure, returning a Figure, and one per caption, computed from the data
    stage    the stage: prepared and cleaned data in, one StageResult out
"""
