"""Evaluation: a trained model scored once on the test split.

One idea per module; import the one you need (``from pipeline.evaluate import metrics``):

    metrics  accuracy with a Wilson interval, confusion, per-class scores, confident mistakes, calibration
             (from predicted probabilities alone: any classifier)
    figures  the figures of those metrics, each with its caption computed from the same data
    stage    ``evaluate_stage``: a model and the test split in, one StageResult out
    ensemble ``ensemble_stage``: K members' probabilities averaged and scored as one classifier, with
             each member beside the ensemble (one member: ``evaluate_stage``)
    tta      test-time augmentation: a model's probabilities averaged over shifted copies of each image
             (``--tta k``), with the validation accuracy with and without it

This package imports nothing itself, so importing it from the task layer stays cheap.
"""
