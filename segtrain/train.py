"""Train a U-Net on a brinelite dataset: the seed workflow, end to end, into a run folder.

    run = segtrain.train("demo/membrane", "runs/membrane", model="small", size=128)

The steps are the seed's: open the dataset with brinelite, split off a validation fold
(``create_folds((val,))``), feed both folds through ``to_keras`` with the seed's processing
function (augmented for training only), build and compile the U-Net, and ``fit`` with the seed's
callbacks (early stopping, learning-rate reduction, best-weights checkpoint) plus a CSV log and
TensorBoard logs. The run folder then holds everything needed to evaluate, predict or resume:

    config.json       every option, the dataset name@version and fingerprint, the precision
    split.json        the row ids of the validation and training folds
    best.weights.h5   the weights with the lowest validation loss
    model.keras       the final model, after the last epoch
    history.csv       loss and dice per epoch, train and validation
    curves.png        those curves, drawn
    logs/             TensorBoard logs
    backup/           the last finished epoch's training state, read by ``resume=True``
"""

import csv
import importlib.util
import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

import brinelite
from segtrain.errors import SegtrainError
from segtrain.losses import compile_model
from segtrain.processing import make_processor
from segtrain.unet import build_model

CONFIG = "config.json"
SPLIT = "split.json"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = "model.keras"
HISTORY = "history.csv"
CURVES = "curves.png"

STRATEGIES = ("default", "mirrored", "multi-worker")
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Options that define a run: resuming with other values would silently train another model.
RUN_DEFINING = (
    "model", "size", "batch_size", "val", "lr", "seed", "augment",
    "image_column", "mask_column", "precision",
)  # fmt: skip


@dataclass
class TrainResult:
    """What ``train`` leaves behind: the run folder, the trained model and its history."""

    run_dir: Path
    model: keras.Model
    history: dict[str, list[float]]
    config: dict[str, Any]


def resolve_precision(precision: str) -> str:
    """The dtype policy to train with; "auto" is mixed_bfloat16 only on CPUs with bf16 units.

    Without native bf16 (AVX512-BF16 or AMX) the CPU emulates it, slower than float32.
    """
    if precision not in PRECISIONS:
        choices = ", ".join(PRECISIONS)
        raise SegtrainError(f"unknown precision {precision!r}; choose one of: {choices}")
    if precision != "auto":
        return precision
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    native = re.search(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", cpuinfo, re.M)
    return "mixed_bfloat16" if native else "float32"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name``.

    "default" runs on one device; "mirrored" copies the model onto every local GPU and splits each
    batch between them; "multi-worker" does the same across machines listed in ``TF_CONFIG``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SegtrainError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a multi-worker task other than the chief (worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def build(name: str, size: int | None, precision: str = "float32") -> keras.Model:
    """Build the compiled model ``name`` at ``size`` with the dtype policy ``precision``.

    The policy is set globally only while the layers are made, then restored. The sigmoid head is
    kept in float32 whatever the policy, so probabilities and the loss are computed in float32.
    """
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(precision)
    try:
        model = build_model(name, size)
    except ValueError as exc:  # unknown name, or a size the architecture cannot take
        raise SegtrainError(str(exc)) from exc
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    model.layers[-1].dtype_policy = "float32"
    return model


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run folder; a SegtrainError if there is none."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise SegtrainError(f"{run_dir} is not a segtrain run folder: it has no {CONFIG}")
    return json.loads(path.read_text())


def load_model(run_dir: str | Path) -> keras.Model:
    """The model of a run folder with its best weights, ready to predict.

    It is rebuilt from ``config.json``, so a run still training (or interrupted) can be used as
    soon as its first epoch has written ``best.weights.h5``.
    """
    config = read_config(run_dir)
    weights = Path(run_dir) / BEST_WEIGHTS
    if not weights.is_file():
        raise SegtrainError(f"{run_dir} has no {BEST_WEIGHTS}: train (at least one epoch) first")
    model = build(config["model"], config["size"], config["precision"])
    with warnings.catch_warnings():  # the file also holds the optimizer's state, unused here
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model.load_weights(weights)
    return model


def read_history(path: str | Path) -> dict[str, list[float]]:
    """``history.csv`` as {column: values per epoch}; empty if the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}


def draw_curves(history: dict[str, list[float]], out: str | Path) -> Path:
    """Plot loss and dice per epoch, train against validation, into the PNG ``out``."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "dice_coeff"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + metric, [])
            axes.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axes.set(title=metric, xlabel="epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(out, dpi=80)
    return Path(out)


def make_callbacks(run_dir: str | Path, resume: bool = False) -> list[keras.callbacks.Callback]:
    """The seed's callbacks, plus CSV/TensorBoard logs and a resume backup.

    On resume, the CSV log is appended to and the checkpoint only replaces the best weights
    with better ones than history.csv already records. TensorBoard logs need the tensorboard
    package; without it they are skipped with a warning rather than failing the run.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    best_so_far = min(read_history(run_dir / HISTORY).get("val_loss", []), default=None)
    callbacks = [
        keras.callbacks.BackupAndRestore(run_dir / "backup", delete_checkpoint=False),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, min_delta=1e-4, verbose=1),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.1, patience=4, min_delta=1e-4, verbose=1
        ),
        keras.callbacks.ModelCheckpoint(
            run_dir / BEST_WEIGHTS,
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far if resume else None,
        ),
        keras.callbacks.CSVLogger(run_dir / HISTORY, append=resume),
    ]
    if importlib.util.find_spec("tensorboard") is None:
        warnings.warn("no TensorBoard logs: the tensorboard package is not installed", stacklevel=2)
    else:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=run_dir / "logs"))
    return callbacks


def check_columns(dataset: brinelite.Dataset, *names: str) -> None:
    """Refuse a dataset lacking one of the image columns ``names`` (the image and its mask)."""
    columns = {column.name: column for column in dataset.columns}
    for name in names:
        if name not in columns or not columns[name].isimage():
            found = ", ".join(f"{c.name} ({c.type})" for c in dataset.columns)
            raise SegtrainError(
                f"dataset {dataset.name} has no image column {name!r} (its columns: {found}); "
                "name the image and mask columns with --image-column and --mask-column"
            )


def split(
    dataset: brinelite.Dataset, val: int, seed: int
) -> tuple[brinelite.Dataset, brinelite.Dataset]:
    """``validation, train = dataset.create_folds((val,))``, refusing an empty fold."""
    if not 0 < val < len(dataset):
        raise SegtrainError(
            f"--val {val} would leave an empty validation or training fold in the "
            f"{len(dataset)} rows of {dataset.name}; pick a value from 1 to {len(dataset) - 1}"
        )
    validation, training = dataset.create_folds((val,), shuffle=True, seed=seed)
    return validation, training


def saved_split(
    dataset: brinelite.Dataset, run_dir: Path
) -> tuple[brinelite.Dataset, brinelite.Dataset]:
    """The validation and training folds recorded in a run folder's ``split.json``."""
    rows = json.loads((run_dir / SPLIT).read_text())
    return dataset.subset(rows["val"]), dataset.subset(rows["train"])


def make_batches(
    training: brinelite.Dataset, validation: brinelite.Dataset, config: dict[str, Any]
) -> tuple[Any, Any]:
    """The seed's generators: shuffled, augmented training batches; plain validation batches."""
    columns = config["image_column"], config["mask_column"]
    size, batch_size, seed = config["size"], config["batch_size"], config["seed"]
    train_process = make_processor(size, config["augment"], rng=np.random.default_rng(seed))
    train_batches = training.to_keras(
        *columns, batch_size, shuffle=True, processing_function=train_process, seed=seed, workers=2
    )
    validation_batches = validation.to_keras(
        *columns,
        batch_size,
        shuffle=False,
        processing_function=make_processor(size, False),
        workers=2,
    )
    return train_batches, validation_batches


def _check_resumable(config: dict[str, Any], run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, to resume none, or to resume with other run-defining options."""
    exists = (run_dir / CONFIG).is_file()
    if exists and not resume:
        raise SegtrainError(
            f"{run_dir} already holds a run; pass --resume to continue it, or another --out"
        )
    if resume and not exists:
        raise SegtrainError(f"nothing to resume: {run_dir} has no {CONFIG}")
    if not resume:
        return
    saved = read_config(run_dir)
    keys = [key for key in RUN_DEFINING if saved[key] != config[key]]
    changed = [f"{key} {saved[key]} -> {config[key]}" for key in keys]
    if saved["dataset"]["fingerprint"] != config["dataset"]["fingerprint"]:
        changed.append(f"dataset {saved['dataset']['ref']} -> {config['dataset']['ref']}")
    if changed:
        raise SegtrainError(
            f"cannot resume {run_dir} with other options ({'; '.join(changed)}); "
            "only --epochs, --strategy and --xla may change"
        )


def _dataset_record(dataset: brinelite.Dataset, source: str) -> dict[str, Any]:
    """How to find this exact dataset again: the folder given, or its pinned name@version."""
    ref = f"{dataset.name}@{dataset.version}"
    folder = Path(source).expanduser()
    return {
        "source": str(folder.resolve()) if folder.is_dir() else ref,
        "ref": ref,
        "fingerprint": dataset.manifest.fingerprint,
        "rows": len(dataset),
    }


def train(
    dataset: str,
    out: str | Path = "runs/unet",
    *,
    model: str = "unet256",
    size: int | None = None,
    batch_size: int = 1,
    val: int = 20,
    epochs: int = 100,
    lr: float = 1e-4,
    seed: int = 42,
    augment: bool = True,
    image_column: str = "image",
    mask_column: str = "mask",
    strategy: str = "default",
    precision: str = "auto",
    xla: bool = False,
    resume: bool = False,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train ``model`` on the brinelite dataset ``dataset`` (name or folder) into ``out``.

    The defaults are the seed's: Carvana's 256 U-Net, batches of 1, 20 validation rows, up to
    100 epochs at learning rate 1e-4. ``size`` defaults to the model's own. ``seed`` fixes the
    split, the weights' initialisation, the batch order and the augmentations. ``xla`` compiles
    the train step with XLA (see ``compile_model``). With ``resume``,
    training continues from the last finished epoch of the run in ``out`` (the other options must
    be the run's own; ``epochs`` may be raised). Returns the run folder, the model after the last
    epoch, the history of every epoch and the config written.
    """
    run_dir = Path(out)
    distribution = make_strategy(strategy)  # first: multi-worker must start before other TF work
    keras.utils.set_random_seed(seed)
    precision_used = resolve_precision(precision)
    with distribution.scope():
        network = compile_model(build(model, size, precision_used), lr, xla)
    data = brinelite.load_dataset(dataset)
    check_columns(data, image_column, mask_column)
    config = {
        "dataset": _dataset_record(data, dataset),
        "model": model,
        "size": network.input_shape[1],
        "batch_size": batch_size,
        "val": val,
        "epochs": epochs,
        "lr": lr,
        "seed": seed,
        "augment": augment,
        "image_column": image_column,
        "mask_column": mask_column,
        "strategy": strategy,
        "replicas": distribution.num_replicas_in_sync,
        "precision": precision_used,
        "precision_requested": precision,
        "xla": xla,
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    _check_resumable(config, run_dir, resume)
    validation, training = saved_split(data, run_dir) if resume else split(data, val, seed)

    # Only the chief writes the run folder; other workers write theirs to a throwaway folder.
    chief = is_chief(distribution)
    write_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="segtrain-worker-"))
    write_dir.mkdir(parents=True, exist_ok=True)
    (write_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    rows = {"val": validation.indices.tolist(), "train": training.indices.tolist()}
    (write_dir / SPLIT).write_text(json.dumps(rows) + "\n")

    train_batches, validation_batches = make_batches(training, validation, config)
    with brinelite.original_errors():
        network.fit(
            train_batches,
            steps_per_epoch=train_batches.steps_per_epoch(),
            validation_data=validation_batches,
            validation_steps=validation_batches.steps_per_epoch(),
            epochs=epochs,
            callbacks=make_callbacks(write_dir, resume),
            verbose=verbose,
        )
    network.save(write_dir / FINAL_MODEL)
    history = read_history(write_dir / HISTORY)
    draw_curves(history, write_dir / CURVES)
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
    return TrainResult(run_dir, network, history, config)
