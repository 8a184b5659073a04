"""Learning curves of one training run (matplotlib, Agg backend)."""
from __future__ import annotations

import os
from typing import Sequence


def learning_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Plot loss and accuracy per epoch (train and validation) to a PNG at ``path``.

    ``history`` is a list of per-epoch dicts with epoch, train_loss, val_loss,
    train_acc and val_acc (missing keys are skipped).
    """
    from pipeline.figures import new_figure, save_png

    epochs = [h["epoch"] for h in history]
    fig = new_figure(10, 3.6, layout=None)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label, ax in [("train_loss", "train", ax_loss), ("val_loss", "validation", ax_loss),
                           ("train_acc", "train", ax_acc), ("val_acc", "validation", ax_acc)]:
        if all(key in h for h in history):
            ax.plot(epochs, [h[key] for h in history], marker="o", label=label)
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy per epoch", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_png(fig, path)
