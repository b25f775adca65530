"""RunConfig: every training option, its default and its check, written once.

The ``segtrain train`` options, the keyword arguments of ``segtrain.train``, the ``config.json``
of a run folder and the resume check all come from the fields below. A field's metadata holds
its help text and whether it defines the run: resuming with another value of such a field would
silently train another model, so it is refused; the others (epochs, strategy, xla, time_limit)
may change.
Checks run in the constructor, before Keras is imported or anything is built.

    config = RunConfig(model="tiny", size=32)
    RunConfig.from_dict(config.to_dict()) == config  # True
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from segtrain.architectures import ARCHITECTURES, architecture, check_encoder_weights
from segtrain.distributed import check_processes, launcher_settings
from segtrain.errors import SegtrainError
from segtrain.history import MONITORS
from segtrain.runtime import resolve_precision
from segtrain.semantic import CLASS_WEIGHTS

STRATEGIES = ("default", "mirrored", "data-parallel")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
LR_SCHEDULES = ("auto", "plateau", "budget")
OPTIMIZERS = ("rmsprop", "adam", "adamw")
# The defaults that depend on the training fold (``RunConfig.for_training``; docs/segtrain.md
# "How the defaults were chosen"): batches of 1 learn most per CPU-minute on a few dozen images,
# batches of 4 at a higher rate on a few hundred.
FEW_ROWS = 100
MANY_ROWS_BATCH = 4
BATCH_1_LR = 3e-4
BATCHES_LR = 1e-3


def _short(rate: float) -> str:
    """3e-4, not 0.0003: a rate as help texts write it."""
    return f"{rate:.0e}".replace("e-0", "e-")


# What runs used before config.json recorded these options.
BEFORE_RECORDED = {"optimizer": "rmsprop", "monitor": "val_loss"}
DEFAULT_VAL = 20  # validation rows without --val or --val-split (the Carvana workflow's)


def option(
    default: Any,
    help: str,  # noqa: A002 (the name typer and argparse use)
    *,
    defines_run: bool = True,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
) -> Any:
    """A RunConfig field: its default, help text, and what ``RunConfig`` checks about it.

    ``minimum`` is inclusive for integers and exclusive for floats (a learning rate > 0).
    """
    metadata = {"help": help, "defines_run": defines_run, "choices": choices, "minimum": minimum}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """The options of one training run (see docs/segtrain.md).

    The defaults are those of the original Carvana/chairs workflow (the walkthrough segtrain
    grew from) but for the model, the batch, the rate and the best epoch's choice: the ``small``
    U-Net at 128 px with RMSprop learns far more per CPU-minute than its U-Net-256 at 1e-4
    (benchmark 6), in batches sized by the training fold, and keeps the epoch of the highest
    validation soft dice; ``model="unet256", batch_size=1, lr=1e-4, monitor="val_loss"`` trains
    as it did.

    ``size`` None means the model's default and ``precision`` "auto" lets the CPU choose;
    ``resolved`` fills both in; ``batch_size`` and ``lr`` None are filled in by
    ``for_training`` once the training fold is drawn, as config.json records them.
    """

    model: str = option(
        "small",
        f"{', '.join(ARCHITECTURES)} (presets at their own size; the original Carvana/chairs "
        "workflow's: unet256).",
    )
    size: int | None = option(
        None, "Input size (default: the model's); small: x16, tiny: x8, *-unet: x32."
    )
    encoder_weights: str = option(
        "none",
        "Encoder U-Nets only: none (random), imagenet (mobilenetv2-unet: keras.applications' "
        "weights) or PATH of a .weights.h5 file the encoder saved.",
    )
    batch_size: int | None = option(
        None,
        f"Samples per batch (default: 1 for a training fold under {FEW_ROWS} rows, else "
        f"{MANY_ROWS_BATCH}).",
        minimum=1,
    )
    val: int | None = option(
        None, "Validation rows, as in create_folds((N,)) (default 20; not with --val-split)."
    )  # checked with the data
    val_split: str | None = option(
        None, "Validate on this split the dataset declares (brinelite info lists them)."
    )
    train_split: str | None = option(
        None, "Train on this declared split (default: the rows outside the validation ones)."
    )
    epochs: int = option(
        100, "Most epochs (early stopping may end sooner).", defines_run=False, minimum=1
    )
    optimizer: str = option(
        "rmsprop",
        "rmsprop (the original Carvana/chairs workflow's), adam or adamw (weight decay 0.004).",
        choices=OPTIMIZERS,
    )
    lr: float | None = option(
        None,
        f"Learning rate (default: {_short(BATCH_1_LR)} for batches of 1, else "
        f"{_short(BATCHES_LR)}; the "
        "original Carvana/chairs workflow's: 1e-4).",
        minimum=0,
    )
    monitor: str = option(
        "val_soft_dice",
        "The validation figure that picks the best epoch (best.weights.h5) and, without "
        "--time-limit, stops early and cuts the rate: val_soft_dice (highest) or val_loss "
        "(lowest, the original Carvana/chairs workflow's).",
        choices=tuple(MONITORS),
    )
    seed: int = option(42, "Seeds split, weights, order, augmentation.")
    augment: bool = option(
        True, "Augment training samples: hue/value shift, shift/scale/rotate, flip."
    )
    image_column: str = option("image", "The dataset's image column.")
    mask_column: str = option("mask", "The dataset's mask column.")
    class_weights: str = option(
        "sqrt",
        "Class maps only: sqrt (the square root of median-frequency weights), auto (the full "
        "median-frequency weights from the pixel shares) or none.",
        choices=CLASS_WEIGHTS,
    )
    strategy: str = option(
        "default",
        "default (one device), mirrored (all local GPUs, TensorFlow backend) or "
        "data-parallel (processes on one or more machines, JAX backend).",
        defines_run=False,
        choices=STRATEGIES,
    )
    num_processes: int | None = option(
        None,
        "data-parallel: processes in the run (default: $KERAS_DISTRIBUTION_NUM_PROCESSES, "
        "else 1); the global batch is --batch-size times this.",
        minimum=1,
    )
    process_id: int | None = option(
        None,
        "data-parallel: this process, 0 to N-1; 0 writes the run folder "
        "(default: $KERAS_DISTRIBUTION_PROCESS_ID, else 0).",
        defines_run=False,
        minimum=0,
    )
    coordinator: str | None = option(
        None,
        "data-parallel: HOST:PORT where process 0 listens "
        "(default: $KERAS_DISTRIBUTION_JOB_ADDRESSES).",
        defines_run=False,
    )
    bind: str | None = option(
        None,
        "data-parallel, process 0: HOST:PORT to listen on (default: the --coordinator address "
        "itself; 0.0.0.0:PORT is every interface). Every process needs SEGTRAIN_SECRET.",
        defines_run=False,
    )
    precision: str = option(
        "auto", "auto: mixed_bfloat16 only on CPUs with bf16 units.", choices=PRECISIONS
    )
    xla: bool = option(
        False, "Compile the train step with XLA (big models on CPU).", defines_run=False
    )
    time_limit: float | None = option(
        None,
        "Stop after this many minutes of wall-clock time (checked after every batch).",
        defines_run=False,
        minimum=0,
    )
    lr_schedule: str = option(
        "auto",
        "plateau (cut tenfold when val_loss stalls), budget (decay linearly to 0 "
        "over --time-limit) or auto (budget with --time-limit, else plateau).",
        defines_run=False,
        choices=LR_SCHEDULES,
    )

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            _check(item, hints[item.name], getattr(self, item.name))
        check_processes(
            self.strategy, self.num_processes, self.process_id, self.coordinator, bind=self.bind
        )
        if self.val is not None and self.val_split is not None:
            raise SegtrainError(
                "--val and --val-split both choose the validation rows; give one of them"
            )
        if self.val_split is not None and self.val_split == self.train_split:
            raise SegtrainError(
                f"--val-split and --train-split are both {self.val_split!r}; validate on "
                "rows the model does not train on"
            )
        if self.lr_schedule == "budget" and self.time_limit is None:
            raise SegtrainError(
                "--lr-schedule budget decays the rate over --time-limit; give --time-limit "
                "MINUTES too, or use --lr-schedule plateau"
            )
        try:
            architecture(self.model).input_size(self.model, self.size)
            check_encoder_weights(architecture(self.model).encoder, self.encoder_weights)
        except ValueError as exc:  # unknown name, or a size the architecture cannot take
            raise SegtrainError(str(exc)) from exc

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RunConfig:
        """A RunConfig from keyword options, refusing names that are not options."""
        names = [item.name for item in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise SegtrainError(
                f"unknown training option {', '.join(map(repr, unknown))}; "
                f"the options are: {', '.join(names)}"
            )
        return cls(**options)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RunConfig:
        """The RunConfig stored in a run folder's config.json (other keys there are ignored).

        Options a run folder predates take the value those runs used (``BEFORE_RECORDED``),
        not today's default, so resuming an old run keeps its recipe.
        """
        record = BEFORE_RECORDED | record
        return cls(**{f.name: record[f.name] for f in dataclasses.fields(cls) if f.name in record})

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def resolved(
        self, cpuinfo: str | None = None, environ: dict[str, str] | None = None
    ) -> RunConfig:
        """This config with the defaults that depend on the model and the machine filled in.

        The model's default size, the precision "auto" picks (``cpuinfo`` is passed to
        ``segtrain.runtime.resolve_precision``; tests inject it), ``val`` 20 unless
        ``val_split`` chooses the validation rows, and, for data-parallel, the
        process options a launcher set in Keras' variables (``environ``, default
        ``os.environ``; see ``segtrain.distributed.launcher_settings``). Other strategies
        run as process 0 of 1.
        """
        size = architecture(self.model).input_size(self.model, self.size)
        processes = {"num_processes": 1, "process_id": 0, "coordinator": None}
        if self.strategy == "data-parallel":
            given = {name: getattr(self, name) for name in processes}
            launched = launcher_settings(environ)
            processes = {
                name: launched.get(name, default) if given[name] is None else given[name]
                for name, default in processes.items()
            }
        val = DEFAULT_VAL if self.val is None and self.val_split is None else self.val
        resolved = dataclasses.replace(
            self,
            size=size,
            val=val,
            precision=resolve_precision(self.precision, cpuinfo),
            **processes,
        )
        check_processes(
            resolved.strategy,
            resolved.num_processes,
            resolved.process_id,
            resolved.coordinator,
            complete=True,
            bind=resolved.bind,
        )
        if resolved.num_processes > 1 and resolved.time_limit is not None:
            raise SegtrainError(
                f"--time-limit cannot bound a run of {resolved.num_processes} processes yet: "
                "each would stop at a batch of its own clock and the others would wait for it; "
                "bound the run with --epochs"
            )
        return resolved

    def for_training(self, rows: int) -> RunConfig:
        """This config with the batch size and rate for a training fold of ``rows`` rows.

        A ``batch_size`` or ``lr`` given stays; otherwise batches of 1 under ``FEW_ROWS`` rows
        and of ``MANY_ROWS_BATCH`` from there, at ``BATCH_1_LR`` for batches of 1 and
        ``BATCHES_LR`` for larger ones.

        Example::

            RunConfig().for_training(24).batch_size  # 1 (membrane); 168 rows of CamVid: 4
        """
        batch = self.batch_size or (1 if rows < FEW_ROWS else MANY_ROWS_BATCH)
        lr = self.lr or (BATCH_1_LR if batch == 1 else BATCHES_LR)
        return dataclasses.replace(self, batch_size=batch, lr=lr)

    @property
    def schedule(self) -> str:
        """The learning-rate schedule "auto" stands for: budget with a time limit, else plateau."""
        if self.lr_schedule != "auto":
            return self.lr_schedule
        return "plateau" if self.time_limit is None else "budget"

    @property
    def global_batch(self) -> int:
        """Samples per training step over all processes: ``batch_size`` x ``num_processes``."""
        return self.batch_size * (self.num_processes or 1)

    def changes_from(self, saved: RunConfig) -> list[str]:
        """The run-defining options that differ from ``saved``, as "name old -> new"."""
        return [
            f"{f.name} {getattr(saved, f.name)} -> {getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.metadata["defines_run"] and getattr(saved, f.name) != getattr(self, f.name)
        ]

    @classmethod
    def free_to_change(cls) -> list[str]:
        """The options a resumed run may change (they do not define it)."""
        return [f.name for f in dataclasses.fields(cls) if not f.metadata["defines_run"]]


def _check(item: dataclasses.Field, kind: Any, value: Any) -> None:
    """Refuse a value of the wrong type, outside its choices, or under its minimum."""
    allowed = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if not any(fits(value, allowed_kind) for allowed_kind in allowed):
        if isinstance(value, float) and float in allowed:  # nan, inf: no JSON number
            raise SegtrainError(f"option {item.name} must be a finite number, not {value!r}")
        names = " or ".join("None" if k is type(None) else k.__name__ for k in allowed)
        raise SegtrainError(f"option {item.name} must be {names}, not {value!r}")
    if item.name == "strategy" and value == "multi-worker":
        raise SegtrainError(
            "--strategy multi-worker is gone (Keras 3 does not support TensorFlow's "
            "multi-worker strategy); train on several machines with --strategy data-parallel"
        )
    choices, minimum = item.metadata["choices"], item.metadata["minimum"]
    if choices and value not in choices:
        raise SegtrainError(f"unknown {item.name} {value!r}; choose one of: {', '.join(choices)}")
    if minimum is not None and value is not None:
        exclusive = float in allowed
        if value <= minimum if exclusive else value < minimum:
            bound = "above" if exclusive else "at least"
            raise SegtrainError(f"option {item.name} must be {bound} {minimum}, not {value!r}")


def fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value is of the type ``kind`` (None, bool, str, int, float, list[...],
    dict[...]): options and config.json's fields are checked with it.

    A bool is no int, an int is a float, and a float is finite, as in JSON.

    Example::

        fits(3, float), fits(True, int), fits([1.0, 2], list[float])  # True, False, True
    """
    origin, arguments = typing.get_origin(kind) or kind, typing.get_args(kind)
    if origin is list:
        return isinstance(value, list) and all(fits(item, arguments[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            fits(k, arguments[0]) and fits(v, arguments[1]) for k, v in value.items()
        )
    if isinstance(value, bool) and origin is not bool:
        return False
    if origin is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, origin)
