"""The training-recipe options of the engine, against slow or independent references:
the moving average of the weights, the per-step onecycle schedule (and the per-epoch schedules
keeping their exact values), the options' checking and fingerprints, and the training loop with
every option on, replayed step by step in the open."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.nn import ExponentialMovingAverage, build_model, make_schedule, onecycle, sha256_arrays
from pipeline.nn.losses import SoftmaxCrossEntropy
from pipeline.nn.optim import Adam
from pipeline.nn.train import TrainConfig, evaluate_split, seed_streams, train
from pipeline.train.checkpoints import run_fingerprint

MNIST = Path(__file__).resolve().parents[1] / "data" / "mirror" / "mnist"


# --- the moving average ----------------------------------------------------------------------

def ema_reference(decay: float, initial: dict, sequence: list[dict]) -> dict:
    """The EMA one element at a time, in float64: a <- d_t a + (1 - d_t) v, d_t = min(decay, (1+t)/(10+t));
    integer arrays take the newest value."""
    avg = {k: [float(v) for v in a.ravel()] for k, a in initial.items()}
    for t, arrays in enumerate(sequence, start=1):
        d = min(decay, (1 + t) / (10 + t))
        for k, values in avg.items():
            new = arrays[k].ravel()
            for i in range(len(values)):
                values[i] = float(new[i]) if initial[k].dtype.kind == "i" else d * values[i] + (1 - d) * float(new[i])
    return {k: np.array(v).reshape(initial[k].shape) for k, v in avg.items()}


def _arrays(rng, step=0):
    return {"w": rng.standard_normal((3, 4)).astype(np.float32) + step * 0.1,
            "b": rng.standard_normal(5).astype(np.float32),
            "count": np.array([step], dtype=np.int64)}


def test_ema_matches_the_slow_reference_through_and_after_its_warm_up():
    rng = np.random.default_rng(0)
    initial = _arrays(rng)
    sequence = [_arrays(rng, step) for step in range(1, 61)]
    decay = 0.8  # d_t = (1+t)/(10+t) until t = 35, then 0.8: both regimes are crossed
    ema = ExponentialMovingAverage(decay, initial)
    initial_copy = {k: v.copy() for k, v in initial.items()}
    for arrays in sequence:
        ema.update(arrays)
    expected = ema_reference(decay, initial_copy, sequence)
    for k in ("w", "b"):
        assert ema.average[k].dtype == np.float32
        np.testing.assert_allclose(ema.average[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert ema.average["count"].tolist() == [60]  # not averaged: copied
    assert ema.t == 60
    assert ema.decay_at(1) == 2 / 11 and ema.decay_at(35) == 0.8 and ema.decay_at(1000) == 0.8
    # the average is a copy: the caller's arrays were never written, nor aliased
    np.testing.assert_array_equal(initial["w"], initial_copy["w"])
    assert not np.shares_memory(ema.average["w"], initial["w"])
    # it moved away from the start and towards the recent values
    assert np.abs(ema.average["w"] - initial_copy["w"]).max() > 0.5


def test_ema_state_round_trips_exactly():
    rng = np.random.default_rng(1)
    sequence = [_arrays(rng, s) for s in range(20)]
    a = ExponentialMovingAverage(0.9, sequence[0])
    for arrays in sequence[1:10]:
        a.update(arrays)
    b = ExponentialMovingAverage(0.5, _arrays(rng))  # other decay, other start: all replaced by the state
    b.load_state_dict(a.state_dict())
    for arrays in sequence[10:]:
        a.update(arrays)
        b.update(arrays)
    assert b.t == a.t == 19 and b.decay == 0.9
    for k in a.average:
        np.testing.assert_array_equal(a.average[k], b.average[k])
    with pytest.raises(ValueError, match="names differ"):
        b.load_state_dict({"decay": 0.9, "t": 1, "average": {"w": a.average["w"]}})
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        ExponentialMovingAverage(1.0, sequence[0])


# --- schedules ---------------------------------------------------------------------------------

def test_per_epoch_schedules_keep_their_exact_values():
    """Values of the per-epoch schedules as they were before onecycle was added (literal floats)."""
    cosine = make_schedule("cosine", 2e-3, 13)  # the default run: 12 epochs, horizon 13
    assert [cosine(e) for e in range(12)] == [
        0.002, 0.0019659258262890683, 0.001866025403784439, 0.0017071067811865474, 0.0015,
        0.0012588190451025207, 0.001, 0.0007411809548974792, 0.0005000000000000002,
        0.00029289321881345256, 0.0001339745962155613, 3.40741737109318e-05]
    step = make_schedule("step", 0.1, 12)
    assert [step(e) for e in range(12)] == [0.1] * 4 + [0.010000000000000002] * 4 + [0.0010000000000000002] * 4
    assert make_schedule("constant", 3e-3, 5)(4) == 3e-3


def test_onecycle_warms_up_linearly_then_decays_as_a_cosine_to_zero():
    lr = make_schedule("onecycle", 1.0, 2, steps_per_epoch=5, warmup_epochs=0.4)  # W = 2 of S = 10 steps
    values = [lr(s) for s in range(10)]
    assert values[:3] == [0.5, 1.0, 1.0]
    for s in range(2, 10):
        assert values[s] == pytest.approx(0.5 * (1 + math.cos(math.pi * (s - 2) / 8)), rel=1e-15)
    assert values[6] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(values[2:], values[3:])) and values[-1] > 0
    assert lr(10) == pytest.approx(0.0, abs=1e-16)  # one step past the end: the cosine's end
    no_warmup = onecycle(2e-3, 3, 4)
    assert no_warmup(0) == 2e-3 and no_warmup(6) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="warmup_epochs"):
        onecycle(1.0, 2, 5, warmup_epochs=2.0)
    with pytest.raises(ValueError, match="takes"):
        make_schedule("onecycle", 1.0, 2, warmup=1)


def test_onecycle_is_torchs_linear_warm_up_then_cosine_annealing():
    torch = pytest.importorskip("torch", reason="torch is not installed (optional extra 'bench')")
    steps_per_epoch, epochs, warmup_epochs, base = 7, 3, 0.6, 2e-3
    w = round(warmup_epochs * steps_per_epoch)
    total = epochs * steps_per_epoch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w - 1),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - w)], milestones=[w])
    ours = make_schedule("onecycle", base, epochs, steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs)
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose([ours(s) for s in range(total)], theirs, rtol=1e-9, atol=1e-15)


# --- configuration ---------------------------------------------------------------------------

def test_recipe_options_are_checked_and_named_in_the_fingerprint_only_when_on():
    base = TrainConfig(epochs=3)
    assert not {"ema_decay", "label_smoothing", "warmup_epochs", "max_scale", "elastic_alpha",
                "elastic_sigma"} & set(base.fingerprint_fields())
    # elastic_sigma tunes elastic_alpha: alone it would change nothing, so it is refused (below)
    spec = [{"type": "flatten"}, {"type": "dense", "units": 10}]
    data = {"x": np.zeros((2, 1, 2, 2), np.float32)}
    seen = {run_fingerprint(spec, base, data)}
    for option in ({"ema_decay": 0.999}, {"label_smoothing": 0.1}, {"schedule": "onecycle"},
                   {"schedule": "onecycle", "warmup_epochs": 0.5}, {"max_scale": 0.1},
                   {"elastic_alpha": 34.0, "elastic_sigma": 4.0}, {"elastic_alpha": 34.0, "elastic_sigma": 6.0}):
        config = TrainConfig(epochs=3, **option)
        config.validate()
        assert {k: v for k, v in config.fingerprint_fields().items() if k in option} == option
        seen.add(run_fingerprint(spec, config, data))
    assert len(seen) == 8  # a checkpoint of one setting is never resumed by another
    for bad, words in (({"ema_decay": 1.0}, "ema_decay must be in"), ({"label_smoothing": -0.1}, "label_smoothing"),
                       ({"schedule": "onecycle", "warmup_epochs": 3.0}, "less than epochs"),
                       ({"warmup_epochs": 0.5}, "onecycle schedule only"),
                       ({"elastic_alpha": -1.0}, "elastic_alpha must be in"),
                       ({"elastic_alpha": 34.0, "elastic_sigma": 0.0}, "elastic_sigma in"),
                       ({"elastic_sigma": 6.0}, "elastic distortion only")):
        with pytest.raises(ValueError, match=words):
            TrainConfig(epochs=3, **bad).validate()
    with pytest.raises(ValueError) as refused:  # no epochs: said once, not again as a warm-up problem
        TrainConfig(epochs=0).validate()
    assert str(refused.value) == "bad training configuration: epochs must be >= 1 (got 0)"


# --- the training loop with every option on, against the loop written out --------------------

SPEC = [  # BatchNorm: its running statistics are averaged with the weights
    {"type": "conv", "filters": 4, "kernel": 5},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10},
]


@pytest.fixture(scope="module")
def digits():
    if not (MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST}")
    from pipeline.acquire.idx import read_pair

    images, labels = read_pair(MNIST / "train-images-idx3-ubyte.gz", MNIST / "train-labels-idx1-ubyte.gz")
    x = (images[:500].astype(np.float32) / 255.0)[:, None]
    return x[:380], labels[:380].astype(np.int64), x[380:], labels[380:500].astype(np.int64)


def test_training_with_every_option_is_the_loop_written_out(digits):
    """EMA (with BatchNorm statistics), label smoothing and per-step onecycle: train() does exactly
    this, bit for bit; validation, the best epoch and the model returned are the average's."""
    x, y, xv, yv = digits
    config = TrainConfig(epochs=3, batch_size=40, learning_rate=3e-3, schedule="onecycle", warmup_epochs=0.5,
                         ema_decay=0.9, label_smoothing=0.1, seed=4)
    result = train(SPEC, x, y, xv, yv, config)

    rngs = seed_streams(config.seed)
    model = build_model(SPEC, (1, 28, 28), rngs["init"])
    opt, ce = Adam(config.learning_rate), SoftmaxCrossEntropy(0.1)
    n_batches = math.ceil(len(x) / 40)  # 10: the last batch has 20 images
    avg = {k: v.copy() for k, v in {**model.parameters(), **model.buffers()}.items()}
    scored = build_model(SPEC, (1, 28, 28))
    epochs, first_rates, t = [], [], 0
    for epoch in range(3):
        order = rngs["shuffle"].permutation(len(x))
        for b in range(n_batches):
            s = epoch * n_batches + b
            w, total = 5, 30  # warm-up steps: 0.5 epoch; steps in all
            opt.lr = 3e-3 * (s + 1) / w if s < w else 3e-3 * 0.5 * (1 + math.cos(math.pi * (s - w) / (total - w)))
            if b == 0:
                first_rates.append(opt.lr)
            idx = order[b * 40:(b + 1) * 40]
            ce.forward(model.forward(x[idx], training=True), y[idx])
            model.backward(ce.backward())
            opt.step(model.parameters(), model.gradients())
            t += 1
            d = min(0.9, (1 + t) / (10 + t))
            for k, v in {**model.parameters(), **model.buffers()}.items():
                avg[k] = avg[k] + np.float32(1 - d) * (v - avg[k])
        scored.load_state_dict({"params": {k: avg[k] for k in model.parameters()},
                                "buffers": {k: avg[k] for k in model.buffers()}})
        loss, acc = evaluate_split(scored, xv, yv)
        epochs.append({"val_loss": loss, "val_acc": acc, "state": scored.state_dict()})

    assert [(h["val_loss"], h["val_acc"]) for h in result.history] == [(e["val_loss"], e["val_acc"]) for e in epochs]
    # the history's rate is each epoch's first step's
    assert [h["lr"] for h in result.history] == pytest.approx(first_rates, rel=1e-15)
    assert first_rates[0] == 3e-3 / 5
    best = max(range(3), key=lambda i: (epochs[i]["val_acc"], -epochs[i]["val_loss"]))
    assert result.best_epoch == best + 1
    assert result.params_sha256 == sha256_arrays(epochs[best]["state"]["params"])
    for k, v in result.model.buffers().items():
        np.testing.assert_array_equal(v, epochs[best]["state"]["buffers"][k])
    # the averaged statistics are not the live network's: the average really covers the buffers
    assert any(not np.array_equal(avg[k], v) for k, v in model.buffers().items())
    assert result.best_val_acc > 0.6  # 380 real digits, 3 epochs: it learned (chance: 0.1)


# --- the benchmark script runs (its figures are not tested: they are the lead's study) -------------

@pytest.mark.slow
def test_recipes_benchmark_runs_candidates_and_prints_the_table(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "benchmarks/recipes.py", "--candidates", "default,tta", "--seed", "3",
                           "--train-limit", "300", "--epochs", "1",
                           "--add", 'small={"preset": "simple", "config": {"ema_decay": 0.9}}'],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| candidate | seed | model |") and len(table) == 4
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[1:])}
    assert set(rows) == {"default", "tta", "small"}
    assert rows["default"][-1] == rows["tta"][-1]  # TTA is evaluation only: the very same trained model
    assert rows["default"][6] == "" and rows["tta"][6].endswith("%")  # the TTA validation column
    assert rows["small"][2] == "simple" and rows["small"][-1] != rows["default"][-1]
    assert "-> tta: best epoch 1/1" in done.stdout and "with TTA, 5 views" in done.stdout


def test_ensemble_tta_benchmark_scores_the_saved_model_as_the_evaluation_did(small_run):
    import json
    import re
    import subprocess
    import sys

    root, task = small_run
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "benchmarks/ensemble_tta.py", str(root / "data"), "models", "0,1"],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((root / "reports" / "latest" / "metrics.json").read_text())
    plain = re.search(r"^tta 0 .*: validation ([\d.]+)%, test ([\d.]+)%$", done.stdout, re.M)
    assert float(plain.group(2)) == pytest.approx(100 * metrics["test_accuracy"], abs=0.005)
    assert re.search(r"^tta 1 .*: validation [\d.]+%, test [\d.]+%$", done.stdout, re.M)

    missing = subprocess.run([sys.executable, "benchmarks/ensemble_tta.py", str(root / "data"), "nothing-here", "0"],
                             cwd=repo, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "no model.pkl under" in missing.stderr

    two = root / "two-splits"  # a data directory with two splits: which one the models used must be said
    for name in ("a", "b"):
        (two / "processed" / name).mkdir(parents=True)
        (two / "processed" / name / "data.pkl").write_bytes(b"")
    ambiguous = subprocess.run([sys.executable, "benchmarks/ensemble_tta.py", str(two), "models", "0"],
                               cwd=repo, capture_output=True, text=True, timeout=600)
    assert ambiguous.returncode == 2 and "2 PrepareData splits" in ambiguous.stderr and "--data" in ambiguous.stderr
