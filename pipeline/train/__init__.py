"""The training stage: the engine (:mod:`pipeline.nn`) wired to augmentation, on-disk
checkpoints and progress (:mod:`.stage`), checkpoints (:mod:`.checkpoints`) and
learning curves (:mod:`.figures`)."""
