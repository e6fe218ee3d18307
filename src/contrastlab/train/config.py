"""The run configuration: typed, validated, loaded from YAML with dotted command-line overrides.

A recipe is YAML whose keys read like the seeds' flags::

    objective:
      task: cross_entropy
      supcon: {weight: 0.2, temperature: 0.1}
      rdrop: {weight: 0.5}
    trainer: {epochs: 20, lr: 1e-3, early_stopping: {monitor: val/accuracy, mode: max, patience: 5}}

and ``contrastlab train recipe.yaml objective.supcon.weight=0.3`` changes one value. A recipe may start
from another (``extends: base.yaml``) and change only what differs. Unknown keys get a
"did you mean" error naming the full dotted path; wrong types and out-of-range values name key and value.
Components are named from registries (dataset, model, loss terms), never by importable path.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializeAsAny,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from contrastlab.train.keys import ConfigError
from contrastlab.train.recipes import apply_overrides, find_recipe, read_recipe
from contrastlab.train.terms import (
    BUILT_IN_TERMS,
    ContrastiveTermConfig,
    ScheduleConfig,
    Strict,
    TermConfig,
    built_in_terms,
    get_term,
    registered_term,
)
from contrastlab.train.terms.layer_supcon import LayerSupConTermConfig
from contrastlab.train.terms.token_supcon import TokenSupConTermConfig

__all__ = [
    "CLASSIFICATION_TASKS",
    "ConfigError",
    "ContrastiveTermConfig",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "ScheduleConfig",
    "TermConfig",
    "TrainConfig",
    "TrainerConfig",
    "load_config",
]


class _Strict(BaseModel):
    model_config = Strict.model_config  # every section as strict as the terms' configs


#: The task losses that take class labels (the others regress, or "none").
CLASSIFICATION_TASKS = ("cross_entropy", "focal", "arcface", "cosface")


class _ObjectiveBase(_Strict):
    """The task loss plus named weighted terms (``objective.supcon.weight``, ...): one field per built-in
    term (``contrastlab.train.terms``, each typed with its config class), and ``custom``, the terms
    registered with ``contrastlab.register_term``."""

    task: Literal["cross_entropy", "focal", "arcface", "cosface", "mse", "l1", "none"] = "cross_entropy"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    focal_gamma: float = Field(default=2.0, ge=0.0)
    #: arcface / cosface (identity heads on cosine logits): the scale s and the margin m (arcface: an angle
    #: in radians, default 0.5; cosface: subtracted from the cosine, default 0.35).
    face_scale: float = Field(default=30.0, gt=0.0)
    face_margin: float | None = Field(default=None, ge=0.0)
    if TYPE_CHECKING:  # fields added from the term registry by _objective_config
        custom: dict[str, TermConfig]

    @model_validator(mode="before")
    @classmethod
    def _registered_terms(cls, data: Any) -> Any:
        """``objective.<name>`` of a registered term moves into ``custom``, validated by its config class."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        custom = dict(data.pop("custom", None) or {})
        for key in [k for k in data if k not in cls.model_fields and registered_term(k) is not None]:
            custom[key] = data.pop(key)
        for key, value in custom.items():
            found = registered_term(key)
            if found is None:
                raise ValueError(f"objective.{key} is not a registered term (contrastlab.register_term, and "
                                 "--plugin on the command line)")  # fmt: skip
            config = found.config
            custom[key] = value if isinstance(value, config) else config.model_validate(value or {})
        data["custom"] = custom
        return data

    def terms(self) -> dict[str, TermConfig]:
        """The configured terms by name (weight 0 included: they are logged, not optimised)."""
        built_in = {name: term for name in BUILT_IN_TERMS if (term := getattr(self, name)) is not None}
        return {**built_in, **self.custom}


def _objective_config() -> type[_ObjectiveBase]:
    """``ObjectiveConfig``: the task's fields, then a field per built-in term in the registry's order (its
    config class, None when the recipe leaves it out), then ``custom``."""
    fields: dict[str, Any] = {name: (term.config | None, None) for name, term in built_in_terms().items()}
    fields["custom"] = (dict[str, SerializeAsAny[TermConfig]], Field(default_factory=dict))
    return create_model("ObjectiveConfig", __base__=_ObjectiveBase, __module__=__name__,
                        __doc__=_ObjectiveBase.__doc__, **fields)  # fmt: skip


if TYPE_CHECKING:
    ObjectiveConfig = _ObjectiveBase
else:
    ObjectiveConfig = _objective_config()


class ViewsConfig(_Strict):
    """How the V views of a sample are made for the contrastive terms and R-Drop.

    count: number of views (1: single view, SupCon then pairs same-label rows).
    mode: "two_stage" runs V forward passes; "one_stage" duplicates the batch inside one forward.
    Dropout differs between views in both modes, so R-Drop and dropout-view SupCon work either way.
    """

    count: int = Field(default=1, ge=1, le=8)
    mode: Literal["one_stage", "two_stage"] = "two_stage"
    #: Data augmentations making each view (graphs: see contrastlab.views.graph.build_augmentation), e.g.
    #: ``[{name: node_mask, p: 0.15}, {name: edge_drop, p: 0.15}]``; None: views differ by dropout only.
    augment: list[Any] | dict[str, Any] | None = None
    #: With ``augment``: the task loss sees the clean input (one more forward) rather than the augmented
    #: views, whose labels an augmentation may have changed (a masked atom changes a molecule).
    task_on_clean: bool = True


class SchedulerConfig(_Strict):
    name: Literal["none", "warmup_cosine", "plateau"] = "none"
    warmup_epochs: int = Field(default=0, ge=0)
    monitor: str = "val/loss"
    #: None: the monitored metric's direction (contrastlab.metrics); needed for a metric it does not know.
    mode: Literal["min", "max"] | None = None
    factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    patience: int = Field(default=5, ge=0)
    min_lr: float = Field(default=0.0, ge=0.0)


class EarlyStoppingConfig(_Strict):
    monitor: str = "val/loss"
    #: None: the monitored metric's direction (contrastlab.metrics); needed for a metric it does not know.
    mode: Literal["min", "max"] | None = None
    patience: int | None = Field(default=None, ge=1)  # None: never stop early; still pick best.pt

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        """``mode``, which a validated TrainConfig always fills in from the monitored metric."""
        if self.mode is None:
            raise RuntimeError("early_stopping.mode is resolved when a TrainConfig validates")
        return self.mode


class SamplerConfig(_Strict):
    name: Literal["random", "class_balanced"] = "random"
    #: class_balanced: at least this many samples of each class drawn into a batch (SupCon needs ≥ 2).
    m_per_class: int = Field(default=2, ge=1)


class TrackingConfig(_Strict):
    """Where MLflow and W&B put a run (``trainer.loggers``); TensorBoard and csv write into the run."""

    #: The MLflow experiment and the W&B project.
    experiment: str = Field(default="contrastlab", min_length=1)
    #: None: the MLFLOW_TRACKING_URI environment variable, else MLflow's default (./mlflow.db).
    mlflow_uri: str | None = None
    #: None: the WANDB_MODE environment variable, else W&B's default (online, which needs wandb login).
    wandb_mode: Literal["online", "offline", "disabled"] | None = None


#: Where each epoch's numbers go: history.csv always (``csv``), TensorBoard event files in the run's
#: ``events/``, an MLflow run, a W&B run.
LOGGERS = ("tensorboard", "mlflow", "wandb", "csv")


class TrainerConfig(_Strict):
    epochs: int = Field(default=10, ge=1)
    #: Rows per micro-batch (all processes together). An epoch is ``training rows // batch_size`` batches:
    #: the last partial batch is dropped, so that every batch has as many negatives; a batch larger than
    #: the training set is refused before the run starts.
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0.0)
    head_lr: float | None = Field(default=None, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    layer_decay: float = Field(default=1.0, gt=0.0, le=1.0)  # LR multiplier per encoder layer downward
    freeze_all_but_last: int | None = Field(default=None, ge=0)  # train only the last k encoder layers
    amp: Literal["off", "bf16", "fp16"] = "off"
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    accumulate: int = Field(default=1, ge=1)
    max_consecutive_skips: int = Field(default=5, ge=1)
    term_grad_norm_every: int = Field(default=10, ge=0)  # steps between per-term gradient norms; 0: off
    scheduler: SchedulerConfig = SchedulerConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    sampler: SamplerConfig = SamplerConfig()
    views: ViewsConfig = ViewsConfig()
    seed: int = 0
    #: The seeds of two sources of variance, when they should differ from ``seed`` (a verdict's --vary):
    #: init (the initial weights and the dropout masks: the global generators) and order (the batches and
    #: the augmentation draws). The split has its own, ``data.split_seed``.
    init_seed: int | None = None
    order_seed: int | None = None
    #: "auto": cuda when there is one, then mps, then cpu.
    device: str = "cpu"
    #: torch's intra-op threads for the process (None: what torch picks). On a machine busier than its cores,
    #: fewer threads are often much faster for small batches.
    threads: int | None = Field(default=None, ge=1)
    #: Every term, its weight and gradient norm per step and per epoch, the config and the final metrics.
    loggers: list[Literal["tensorboard", "mlflow", "wandb", "csv"]] = ["tensorboard", "csv"]
    tracking: TrackingConfig = TrackingConfig()

    @property
    def resolved_init_seed(self) -> int:
        return self.seed if self.init_seed is None else self.init_seed

    @property
    def resolved_order_seed(self) -> int:
        return self.seed if self.order_seed is None else self.order_seed

    @field_validator("device")
    @classmethod
    def _a_torch_device(cls, device: str) -> str:
        import torch

        if device == "auto":
            return device
        try:
            torch.device(device)
        except RuntimeError:
            raise ValueError(f"{device!r} is not a device; expected auto, cpu, cuda, cuda:1, mps") from None
        return device


class DataConfig(_Strict):
    """A dataset from the registry (``contrastlab datasets`` lists them) and how it is split."""

    name: str = "blobs"
    options: dict[str, Any] = Field(default_factory=dict)
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    split_seed: int = 0
    #: "random": stratified by class; "dataset": the dataset's own train/test split (e.g. MoleculeACE),
    #: with val_fraction of its train part held out for validation (test_fraction is then unused);
    #: "scaffold" (molecules): Bemis-Murcko scaffolds kept within one part, MoleculeNet's convention.
    split: Literal["random", "dataset", "scaffold"] = "random"
    #: A label budget: train on this many rows per class (an integer; classification), or this share of
    #: the training rows (0 < x <= 1; per class for a classification), a draw seeded by split_seed. Val
    #: and test are unchanged, so runs at every budget are scored alike. None: every training row.
    train_labels: int | float | None = Field(default=None, gt=0)
    #: Regression: train on targets standardised with the training split's mean and sd (metrics are
    #: reported in the original units).
    standardize_targets: bool = True
    #: Keep at most this many rows of each of train/val/test (a draw seeded by split_seed, after the
    #: split): a quick smoke run of a recipe on any dataset. None: every row.
    max_rows_per_split: int | None = Field(default=None, ge=2)

    @field_validator("train_labels")
    @classmethod
    def _a_count_or_a_share(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, float) and value > 1.0:
            raise ValueError(f"data.train_labels={value}: a share is at most 1.0 (or give a per-class count)")
        return value

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> DataConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 to leave training data, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        return self


class ModelConfig(_Strict):
    name: str = "mlp"
    hidden_dims: list[int] = Field(default_factory=lambda: [64, 64])
    embedding_dim: int = Field(default=32, ge=1)
    projection_dim: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: Model-specific settings, e.g. ``{pooling: [mean, attention], heads: 4}`` for graph encoders.
    options: dict[str, Any] = Field(default_factory=dict)
    #: Start the encoder from a pretrained run (its directory, best weights) or a checkpoint file; the heads
    #: start fresh (fine-tuning).
    init_from: str | None = None


class TrainConfig(_Strict):
    #: The run's directory name under ``--runs-dir``: one path component.
    name: str = "run"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig.model_validate({})
    trainer: TrainerConfig = TrainerConfig()

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        from contrastlab.train.rundir import check_run_name

        return check_run_name(name)

    @property
    def primary_metric(self) -> str:
        """The test metric a verdict answers first: the early-stopping metric when the recipe names one, else
        the task's natural metric (accuracy for a classification, RMSE for a regression; the loss only for a
        run without a task), never the loss by default."""
        stopping = self.trainer.early_stopping
        if "monitor" in stopping.model_fields_set or self.objective.task == "none":
            return f"test.{stopping.monitor.split('/')[-1]}"
        return "test.accuracy" if self.objective.task in CLASSIFICATION_TASKS else "test.rmse"

    @model_validator(mode="after")
    def _views_fit_terms(self) -> TrainConfig:
        needs = {name: get_term(name).needs for name in self.objective.terms()}
        most = max((n.views for n in needs.values()), default=1)
        if most > self.trainer.views.count:
            names = [name for name, n in needs.items() if n.views > self.trainer.views.count]
            raise ValueError(
                f"objective term(s) {names} compare {most} views of each sample, but trainer.views.count is "
                f"{self.trainer.views.count}; set trainer.views.count={most}"
            )
        labelled = [name for name, n in needs.items() if n.labels]
        if labelled and self.objective.task not in CLASSIFICATION_TASKS:
            raise ValueError(f"objective term(s) {labelled} need class labels; objective.task="
                             f"{self.objective.task!r} is not a classification")  # fmt: skip
        from contrastlab.metrics import mode_for

        monitored: list[tuple[str, EarlyStoppingConfig | SchedulerConfig]] = [
            ("early_stopping", self.trainer.early_stopping)
        ]
        if self.trainer.scheduler.name == "plateau":
            monitored.append(("scheduler", self.trainer.scheduler))
        for key, part in monitored:
            if part.mode is None:
                mode = mode_for(part.monitor)
                if mode is None:
                    raise ValueError(
                        f"trainer.{key}.monitor={part.monitor!r} has no known direction; set "
                        f"trainer.{key}.mode to min or max (or declare it: metrics.register_metric)"
                    )
                part.mode = mode
        adaptive = [n for n, t in self.objective.terms().items() if t.auto_ratio is not None]
        if adaptive and self.trainer.term_grad_norm_every == 0:
            raise ValueError(
                f"objective term(s) {adaptive} set auto_ratio, which adapts λ from per-term gradient norms, "
                "but trainer.term_grad_norm_every is 0 (never measured); set it >= 1 or drop auto_ratio"
            )
        terms = self.objective.terms()
        tokens, layered = terms.get("token_supcon"), terms.get("layer_supcon")
        if isinstance(tokens, TokenSupConTermConfig) and isinstance(layered, LayerSupConTermConfig) and \
                layered.level == "token" and tokens.k != layered.k:  # fmt: skip
            raise ValueError(
                f"objective.token_supcon.k={tokens.k} and objective.layer_supcon.k={layered.k} select tokens "
                "once per forward; give them the same k"
            )
        return self


# --- loading, overrides, friendly errors -----------------------------------------------------------------


def _fields_at(path: tuple[str | int, ...]) -> list[str]:
    """The field names valid at a dotted location, for "did you mean"."""
    model: Any = TrainConfig
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        model = next(
            (a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")), None
        )
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _fields_at(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?" if close else ""
            lines.append(f"unknown key '{key}'{hint} (valid here: {', '.join(sorted(known))})")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def validate(raw: dict[str, Any]) -> TrainConfig:
    """Builds a TrainConfig from plain data.

    Raises:
        ConfigError: unknown keys (with a suggestion), wrong types or out-of-range values.
    """
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def load_config(
    path: str | Path | dict[str, Any] | None, overrides: list[str] | None = None
) -> tuple[TrainConfig, dict[str, Any]]:
    """Reads a recipe (YAML, safe loader; or a mapping of the same settings), applies overrides, validates.

    Returns:
        The validated config and the raw mapping it came from (what the run directory records).

    Raises:
        ConfigError: the file is not a YAML mapping, or the result does not validate.
    """
    if isinstance(path, dict):
        raw = copy.deepcopy(path)
    else:
        raw = read_recipe(find_recipe(path)) if path is not None else {}
    raw = apply_overrides(raw, overrides or [])
    return validate(raw), raw
