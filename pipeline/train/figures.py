"""Learning curves of one training run, and their caption computed from the history."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def learning_curves(history: Sequence[dict]) -> "Figure":
    """Loss and accuracy per epoch (train and validation), side by side.

    ``history`` is a list of per-epoch dicts with epoch, train_loss, val_loss,
    train_acc and val_acc (missing keys are skipped).
    """
    from pipeline.figures import new_figure

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
    return fig


def learning_curves_caption(history: Sequence[dict], best_epoch: int, stopped_early: bool = False,
                            ema_decay: float = 0.0, label_smoothing: float = 0.0) -> str:
    """What the learning curves show, in a sentence or two, from the history itself (and what the
    validation figures and the training loss are of, when the run averaged weights or smoothed labels)."""
    best = next(h for h in history if h["epoch"] == best_epoch)
    first, last = history[0], history[-1]
    text = (f"Cross-entropy and accuracy per epoch on the training and validation splits. "
            f"Validation accuracy was best in epoch {best_epoch} of {len(history)} "
            f"({100 * best['val_acc']:.2f}%, validation loss {best['val_loss']:.4f}); "
            f"the model keeps that epoch's parameters.")
    if len(history) > 1:
        text += (f" Training loss went from {first['train_loss']:.4f} to {last['train_loss']:.4f}, "
                 f"validation loss from {first['val_loss']:.4f} to {last['val_loss']:.4f}.")
    if stopped_early:
        text += " Training stopped early: validation accuracy had stopped improving."
    if ema_decay:
        text += (f" Validation figures are those of the moving average of the weights (decay {ema_decay}), "
                 "which is also the model kept.")
    if label_smoothing:
        text += (f" Training loss is against labels smoothed by {label_smoothing}, so it does not fall to 0; "
                 "validation loss is plain cross-entropy.")
    return text
