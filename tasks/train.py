"""TrainCNN: train the NumPy CNN on the prepared split, resumably (pipeline.train).

Also the pieces every task of an ensemble uses: :class:`NeutralIntParameter`,
:class:`NeutralFloatParameter` and :class:`NeutralDefaults` (a parameter added without renaming
the runs made before it), and
:func:`model_name` (``twoconv-e12-s42``, ``-m3`` for member 3, ``-k5`` for an ensemble of 5).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import luigi
from luigi.util import requires

from pipeline.nn.optim import OPTIMIZERS, SCHEDULES
from pipeline.nn.train import ELASTIC_SIGMA
from tasks.base import PipelineTask
from tasks.config import checking_settings, data_path, run_name
from tasks.cores import worker_share_of_cores
from tasks.data import PrepareData

log = logging.getLogger("luigi-interface")


class NeutralParameter(luigi.Parameter):
    """A parameter whose default is neutral: a task holding it is the task that existed before
    the parameter did. :class:`NeutralDefaults` leaves it out of the task's string parameters (so of
    its task id, parameter digest, slug and manifest) while it holds that default."""

    def __init__(self, *, default, neutral=None, **kwargs) -> None:
        super().__init__(default=default, **kwargs)
        # The value that means "as before the parameter existed": the built-in default, whatever
        # luigi.cfg configures, unless the default itself has since moved (then runs at the new
        # default are new runs, with their own ids, and the old neutral value keeps the old ids).
        self.neutral = default if neutral is None else neutral


class NeutralIntParameter(NeutralParameter, luigi.IntParameter):
    """An int :class:`NeutralParameter`."""


class NeutralFloatParameter(NeutralParameter, luigi.FloatParameter):
    """A float :class:`NeutralParameter` (0.0 and a parsed "0" are both the neutral 0.0)."""


class NeutralDefaults:
    """Mixin for a task with :class:`NeutralParameter` parameters (put it before luigi.Task)."""

    def _neutral(self) -> set[str]:
        return {name for name, param in self.get_params()
                if isinstance(param, NeutralParameter) and self.param_kwargs.get(name) == param.neutral}

    def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict[str, str]:
        params = super().to_str_params(only_significant=only_significant, only_public=only_public)
        for name in self._neutral():
            params.pop(name, None)
        return params

    def __repr__(self) -> str:
        # Luigi's repr (how log lines and run summaries name a task), without the neutral parameters
        params, neutral = dict(self.get_params()), self._neutral()
        parts = [f"{name}={params[name].serialize(value)}"
                 for name, value in self.get_param_values(self.get_params(), [], self.param_kwargs)
                 if params[name].significant and name not in neutral]
        return f"{self.get_task_family()}({', '.join(parts)})"


def model_name(task: luigi.Task, member: int = 0, ensemble: int = 1) -> str:
    """The readable name of a model or run: ``twoconv-e12-s42`` (:func:`tasks.config.run_name`), then
    ``-m3`` for ensemble member 3 and ``-k5`` for an ensemble of 5 (neither for a single model)."""
    name = run_name(task.preset, task.epochs, task.seed, task.train_limit)
    return name + (f"-m{member}" if member else "") + (f"-k{ensemble}" if ensemble > 1 else "")


@requires(PrepareData)
class TrainCNN(NeutralDefaults, PipelineTask):
    """Write ``data_dir/models/<preset>-e<epochs>-s<seed>[-n<limit>]-<hash>/``: model.pkl, the
    training record (result.json: settings, outcome, per-epoch history), history.pkl,
    learning_curves.png and model.txt (the layer-by-layer summary).

    model.pkl is a plain pickle (format, spec, input_shape, params, buffers) holding the
    parameters of the epoch that was best on the *validation* split. A checkpoint
    is written atomically after every epoch under ``<slug>.checkpoints/`` beside the
    output; a killed run resumes from it with bit-identical results. The checkpoints
    are deleted once the output is in place (the output holds everything they would give).

    Ensemble member ``m`` (``--member m``) trains with seed ``seed + m`` on the split of ``seed``,
    so every member of an ensemble sees the same training and validation images; member 0 is the
    single model, with the id, slug and parameters it always had.
    """

    stage = "models"
    primary = "model.pkl"
    # Members first: training is the long pole of a run, and with several workers (or machines) the
    # short stages fill in around it instead of holding a worker while members wait.
    priority = 10

    preset = luigi.Parameter(default="twoconv", description="model architecture: a name from pipeline.nn.PRESETS")
    epochs = luigi.IntParameter(default=12, description="maximum number of epochs")
    batch_size = luigi.IntParameter(default=100, description="training images per mini-batch")
    learning_rate = luigi.FloatParameter(default=2e-3, description="initial learning rate")
    optimizer = luigi.ChoiceParameter(choices=OPTIMIZERS, default="adam",
                                      description="adam, or sgd with Nesterov momentum 0.9")
    weight_decay = luigi.FloatParameter(default=0.0, description="L2 penalty added to the gradients")
    schedule = luigi.ChoiceParameter(choices=SCHEDULES, default="cosine",
                                     description="learning rate per epoch (constant, step, cosine), or per step "
                                                 "(onecycle: linear warm-up over --warmup-epochs, then cosine to 0). "
                                                 "On the command line write "
                                                 "--RunPipeline-schedule (or --TrainCNN-schedule): Luigi takes a "
                                                 "bare --schedule for an abbreviation of its --scheduler-* flags")
    augment = luigi.BoolParameter(default=True, parsing=luigi.BoolParameter.EXPLICIT_PARSING,
                                  description="random shifts (±2 px) and rotations (±10°) of training images; "
                                              "--augment false to turn off")
    patience = luigi.IntParameter(default=0, description="stop after this many epochs without a better validation "
                                                         "score; 0 = run all epochs")
    member = NeutralIntParameter(default=0, description="ensemble member: trains with seed + member on the "
                                                        "validation split of seed; 0 = the single model")
    # Recipe options, added after the parameters above (so none of theirs moves): off at their defaults.
    warmup_epochs = NeutralFloatParameter(default=0.0, description="epochs (may be fractional, e.g. 0.5) of linear "
                                          "learning-rate warm-up; onecycle schedule only; 0 = none")
    ema_decay = NeutralFloatParameter(default=0.0, description="keep an exponential moving average of the weights "
                                      "(updated every step, e.g. 0.999): it is validated, chooses the best epoch and "
                                      "is the model kept; 0 = off")
    # 0.1 by default since it beat 0 on the validation split of seeds 42 and 1 (benchmarks/recipes.py);
    # 0 (off) stays neutral, so runs made without it keep their ids.
    label_smoothing = NeutralFloatParameter(default=0.1, neutral=0.0,
                                            description="train against targets (1 - s)·one-hot + s/10; 0 = off")

    max_scale = NeutralFloatParameter(default=0.0, description="with augmentation, also scale each training image "
                                      "by a random factor in 1 ± max_scale (e.g. 0.1); 0 = off")
    elastic_alpha = NeutralFloatParameter(default=0.0, description="with augmentation, also distort each training "
                                          "image elastically (Simard 2003): smoothed random displacements times "
                                          "alpha pixels (Simard used 34); 0 = off")
    elastic_sigma = NeutralFloatParameter(default=ELASTIC_SIGMA, description="the Gaussian smoothing, in pixels, of the "
                                          "elastic displacements; used only with --elastic-alpha")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Fail when the task is built, before hours of upstream work.
        from pipeline.nn import preset_spec

        with checking_settings(self):
            preset_spec(self.preset)
            if self.member < 0:
                raise ValueError(f"member must be >= 0 (0 is the single model), got {self.member}")
            self.train_config().validate()

    def slug_prefix(self) -> str:
        return model_name(self, member=self.member) + "-"

    def checkpoint_dir(self) -> Path:
        """Outside the staged output directory, so checkpoints survive a crash of the run."""
        return data_path(self.stage, f"{self.slug()}.checkpoints")

    def train_config(self):
        from pipeline.nn import TrainConfig

        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                           optimizer=self.optimizer, weight_decay=self.weight_decay, schedule=self.schedule,
                           augment=self.augment, patience=self.patience, seed=self.seed + self.member,
                           warmup_epochs=self.warmup_epochs, ema_decay=self.ema_decay,
                           label_smoothing=self.label_smoothing, max_scale=self.max_scale,
                           elastic_alpha=self.elastic_alpha, elastic_sigma=self.elastic_sigma)

    def run(self):
        from pipeline.train.stage import train_stage

        data = self.load_input()
        with worker_share_of_cores("TrainCNN"):
            result = train_stage(data, self.preset, self.train_config(), self.checkpoint_dir(),
                                 progress=self.progress)
            self.write_result(result)  # inside: the manifest records the BLAS threads it trained on
        shutil.rmtree(self.checkpoint_dir(), ignore_errors=True)
        s = result.summary
        log.info("TrainCNN: best epoch %d, validation accuracy %.4f, %.1f s, params_sha256 %s",
                 s["best_epoch"], s["best_val_accuracy"], s["train_seconds"], s["params_sha256"][:16])
