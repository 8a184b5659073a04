"""The data stages: cleaning (audit and policy) and preparation (normalisation and split).

One idea per module; import the one you need (``from pipeline.data import normalize``):

    policy       the cleaning policies (keep, flag, drop) and what each does
    audit        duplicates, train/test leakage, label checks, near-empty and outlier images
    features     per-image shape features (ink, bounding box, centroid, slant)
    clean        the policy applied to the audited splits, and the audit report
    clean_stage  the cleaning stage: raw IDX files in, one StageResult out (cleaned.pkl, tables, figure)
    normalize    min-max / standardize statistics fitted on training images, and their application
    split        the stratified, seeded train/validation split
    prepare      the preparation stage: cleaned data in, one StageResult out (data.pkl)
    augment      random shifts and rotations of training batches (used by the training stage)

This package imports nothing itself, so ``pipeline.data.policy`` and ``pipeline.data.normalize``
stay cheap for the task layer.
"""
