"""Train a U-Net on a brinelite dataset: the Carvana/chairs workflow, end to end, into a run.

    run = segtrain.train("demo/membrane", "runs/membrane", model="small", size=128)

The steps are those of the original Carvana/chairs workflow: open the dataset, split off a
validation fold (``create_folds((val,))``), feed both folds through ``to_keras`` with its processing
function (augmented for training only), build and compile the U-Net, and ``fit`` with its
callbacks (``segtrain.callbacks``: early stopping, learning-rate reduction, best-weights
checkpoint, a CSV log and TensorBoard logs; Ctrl-C held while an epoch is written,
``segtrain.epoch_end_shield``). What the masks mean (binary, or the dataset's class map) is the
run's ``segtrain.tasks.MaskTask``, which sets the head, the loss and how masks are read; the
processing is split in two stages so brinelite caches the deterministic one
(``segtrain.processing``). Every option is checked, and the run folder too, before Keras is
imported; ``segtrain.run_folder`` lists what the folder then holds.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
from segtrain import distributed, runtime
from segtrain.callbacks import make_callbacks
from segtrain.config import RunConfig
from segtrain.datasets import check_columns, open_dataset
from segtrain.epoch_end_shield import EpochEndShield
from segtrain.errors import RunStopped, SegtrainError
from segtrain.processing import make_processor
from segtrain.records import DatasetRecord, RunRecord
from segtrain.run_folder import BACKUP, BEST_WEIGHTS, FINAL_MODEL, HISTORY, RunFolder
from segtrain.tasks import MaskTask, task_for

if TYPE_CHECKING:
    import keras

    from segtrain.evaluation import Evaluation

PER_PROCESS = ("process_id", "coordinator", "bind")  # options processes of one run differ in


@dataclass
class TrainResult:
    """What ``train`` leaves behind: the run folder, the trained model and its history.

    ``evaluation`` is ``segtrain.evaluate``'s of the best weights on the validation fold
    (thresholded or argmax, at each image's full size), as ``segtrain evaluate`` gives it;
    None for a run of several processes (score it with ``segtrain evaluate`` then).
    """

    run_dir: Path
    model: keras.Model
    history: dict[str, list[float]]
    config: dict[str, Any]
    evaluation: Evaluation | None = None


def check_val(dataset: brinelite.Dataset, val: int) -> None:
    """Refuse a validation size that would leave the validation or training fold empty."""
    if not 0 < val < len(dataset):
        raise SegtrainError(
            f"--val {val} would leave an empty validation or training fold in the "
            f"{len(dataset)} rows of {dataset.name}; pick a value from 1 to {len(dataset) - 1}"
        )


def make_folds(
    data: brinelite.Dataset, config: RunConfig
) -> tuple[brinelite.Dataset, brinelite.Dataset]:
    """The validation and training folds: splits the dataset declares, or a random fold.

    ``--val-split`` validates on that split and trains on ``--train-split`` or else on every
    row outside it; otherwise ``--val`` rows of ``--train-split`` (or of all rows) are drawn
    with ``seed``, as ``create_folds((val,))``. Unknown splits and empty folds are refused.
    """
    pool = data.split(config.train_split) if config.train_split else data
    if config.val_split is None:
        check_val(pool, config.val)
        return tuple(pool.create_folds((config.val,), shuffle=True, seed=config.seed))
    validation = data.split(config.val_split)
    held = set(validation.indices.tolist())
    outside = [k for k, row in enumerate(data.indices.tolist()) if row not in held]
    training = pool if config.train_split else data.subset(outside)
    if not len(training):
        raise SegtrainError(
            f"--val-split {config.val_split} holds every row of {data.name}; name the rows "
            "to train on with --train-split"
        )
    return validation, training


def make_batches(
    training: brinelite.Dataset,
    validation: brinelite.Dataset,
    config: RunConfig,
    shard: tuple[int, int] | None = None,
    task: MaskTask | None = None,
) -> tuple[Any, Any]:
    """Carvana's generators: shuffled, augmented training batches; plain validation batches.

    Both come from brinelite's preprocessed cache: the training fold's ``prepare`` stage (resize,
    mask to binary or to class indices) is computed once per row and only ``augment`` runs
    every epoch; the validation fold's whole processing is computed once. The ``task``
    (default: the dataset's, ``segtrain.tasks.task_for``) reads the masks. ``shard``
    ``(process_id, num_processes)``: this process's share of both folds, each epoch; every
    row's augmentation draws from its own generator (seed, epoch, row), so processes reading
    different rows never warp them alike.
    """
    columns = config.image_column, config.mask_column
    task = task or task_for(training.manifest.classes)
    process = make_processor(config.size, config.augment, task=task)  # rng: per row
    train_batches = training.to_keras(
        *columns,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        prepare=process.prepare,
        augment=process.augment,
        prepare_key=process.key,
        shard=shard,
    )
    plain = make_processor(config.size, False, task=task)
    validation_batches = validation.to_keras(
        *columns,
        config.batch_size,
        shuffle=False,
        prepare=plain,
        prepare_key=plain.whole_key(),
        shard=shard,
    )
    return train_batches, validation_batches


def keras_verbosity(verbose: int | str) -> int:
    """Keras' ``verbose``: "auto" is a progress bar on a terminal, one line per epoch otherwise."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def train(
    dataset: str,
    out: str | Path = "runs/unet",
    *,
    resume: bool = False,
    verbose: int | str = "auto",
    **options: Any,
) -> TrainResult:
    """Train a U-Net on the brinelite dataset ``dataset`` into the run folder ``out``.

    Args:
        dataset: a brinelite ``scope/name[@version]`` or a dataset folder.
        out: the run folder to write (it must not hold a run, unless ``resume``).
        resume: continue the run in ``out`` from its last finished epoch; the run-defining
            options must be the run's own (``epochs``, ``strategy``, ``process_id``,
            ``coordinator``, ``xla``, ``time_limit`` may change).
        verbose: Keras' verbosity: 0 silent, 1 progress bar, 2 one line per epoch; "auto" is 1
            on a terminal and 2 otherwise (a log file).
        **options: the fields of ``segtrain.config.RunConfig`` (model, size, batch_size, val,
            epochs, optimizer, lr, seed, augment, image_column, mask_column, class_weights,
            strategy, num_processes, process_id, coordinator, precision, xla, time_limit,
            lr_schedule);
            by default the ``small`` U-Net at 128 px, batches of 1, 20 validation rows, up to
            100 epochs at RMSprop 3e-4 (``model="unet256", lr=1e-4`` is Carvana's recipe).
            With ``strategy="data-parallel"`` every process calls ``train`` with its own
            ``process_id`` (``segtrain.distributed``); in a run of several processes a failure
            after the checks ends the calling process (one line on stderr, exit status 1)
            rather than raising, since JAX would otherwise wait minutes for its peers.

    Returns:
        The run folder, the model after the last epoch, the history of every epoch and the
        config written to config.json.

    Raises:
        SegtrainError: a bad option or run folder, before anything is built.
        brinelite.BrineliteError: a dataset that cannot be found or read.

    Example::

        run = segtrain.train("demo/membrane", "runs/membrane", val=6)
        min(run.history["val_loss"]), run.config["precision"]
    """
    requested = RunConfig.from_options(options)
    config = requested.resolved()
    data = open_dataset(dataset)
    check_columns(data, config.image_column, config.mask_column)
    # Unknown splits and empty folds are refused before Keras loads; the fold sizes the batch.
    config = config.for_training(len(make_folds(data, config)[1]))
    task = task_for(data.manifest.classes).weighted(config.class_weights)  # before Keras
    record = DatasetRecord.of(data, dataset)
    folder = RunFolder(Path(out))
    if config.process_id == 0 or resume:  # the others write no run folder of their own
        folder.check_start(config, record, resume)
    if config.strategy == "data-parallel":
        runtime.require_backend("jax", "--strategy data-parallel")

    # Every check passed: Keras (and its backend) loads now.
    with distributed.exit_on_failure(config.process_id, config.num_processes):
        return fit_run(
            data,
            folder,
            config=config,
            requested=requested.precision,
            task=task,
            dataset=record,
            resume=resume,
            verbosity=keras_verbosity(verbose),
        )


def start_distribution(config: RunConfig, record: DatasetRecord) -> runtime.Distribution:
    """The run's distribution; the processes of a data-parallel run join and compare notes."""
    if config.strategy != "data-parallel":
        return runtime.distribution(config.strategy)
    distribution = distributed.start(
        config.num_processes, config.process_id, config.coordinator, config.bind
    )
    if distribution.processes > 1:
        options = {k: v for k, v in config.to_dict().items() if k not in PER_PROCESS}
        distributed.agree(
            config.process_id,
            {
                "dataset": f"{record.ref} (sha256 {record.sha256 or '-'}, "
                f"fingerprint {record.fingerprint})",
                "options": json.dumps(options, sort_keys=True),
            },
        )
    return distribution


def fit_run(
    data: brinelite.Dataset,
    folder: RunFolder,
    *,
    config: RunConfig,
    requested: str,
    task: MaskTask,
    dataset: DatasetRecord,
    resume: bool,
    verbosity: int,
) -> TrainResult:
    """Build, split, fit and save: ``train`` once every check has passed.

    Args:
        data: the dataset to train on, as opened by ``train``.
        folder: the run folder to write (checked by ``RunFolder.check_start``).
        config: the resolved options; ``requested`` is the precision asked for.
        task: what the masks mean (``segtrain.tasks``), with its loss weights.
        dataset: ``data``'s record, for config.json and the processes' agreement.
        resume: continue the run in ``folder``.
        verbosity: Keras' ``verbose``.
    """
    runtime.set_seed(config.seed)  # first: every process then starts from the same seed
    distribution = start_distribution(config, dataset)
    network = build_network(config, task, distribution)
    if resume:
        validation, training = folder.split(data)
    else:
        validation, training = make_folds(data, config)
    written = run_record(config, requested, task, dataset, distribution)
    if verbosity:
        print(summary_line(written, len(training), len(validation)))
    chief = distribution.process_id == 0
    with folder.kept_or_undone(resume) if chief else contextlib.nullcontext():
        if chief:
            if resume:
                folder.upgrade_history()  # an older run's columns, before Keras appends
            folder.write_record(written)
            folder.write_split(validation, training)
        shard = (config.process_id, config.num_processes) if config.num_processes > 1 else None
        batches = make_batches(training, validation, config, shard, task)
        for _ in range(folder.finished_epochs() if resume else 0):  # Keras resumes there,
            batches[0].on_epoch_end()  # and the rows read must be that epoch's, not the first's
        copied = (BACKUP, HISTORY) if resume else ()
        with distributed.output_folder(folder.path, config.process_id, copied) as written_to:
            history = fit_epochs(network, batches, written_to, config, resume, verbosity)
    evaluation = None
    if chief and config.num_processes == 1:  # several processes would all have to take part
        from segtrain.evaluation import evaluate

        evaluation = evaluate(folder.path)  # the best weights, as `segtrain evaluate` scores them
    return TrainResult(folder.path, network, history, written.to_json(), evaluation)


def build_network(
    config: RunConfig, task: MaskTask, distribution: runtime.Distribution
) -> keras.Model:
    """The run's compiled model (``segtrain.models.build_model``), in the distribution's scope."""
    from segtrain.models import build_model

    with distribution.scope():
        return build_model(
            config.model,
            config.size,
            precision=config.precision,
            lr=config.lr,
            xla=config.xla,
            optimizer=config.optimizer,
            task=task,
            encoder_weights=config.encoder_weights,
        )


def run_record(
    config: RunConfig,
    requested: str,
    task: MaskTask,
    dataset: DatasetRecord,
    distribution: runtime.Distribution,
) -> RunRecord:
    """What config.json records of the run: options, dataset, the task's classes, the machine."""
    return RunRecord(
        config=config,
        dataset=dataset,
        **task.record(),
        precision_requested=requested,
        global_batch=config.global_batch,
        backend=runtime.backend(),
        replicas=distribution.replicas,
        versions=runtime.versions(),
    )


def summary_line(record: RunRecord, training: int, validation: int) -> str:
    """The line a run starts with: model, size, dataset, fold sizes, precision and machine."""
    config = record.config
    processes = config.num_processes
    return (
        f"Training {config.model} at {config.size}x{config.size} on {record.dataset.ref} "
        f"({training} training, {validation} validation rows): precision "
        f"{config.precision} ({record.precision_requested} asked), {record.backend} backend, "
        f"{record.replicas} replica(s), global batch {config.global_batch} "
        f"({processes} process(es) x {config.batch_size})"
        + (f"; this is process {config.process_id}." if processes > 1 else ".")
    )


def fit_epochs(
    network: keras.Model,
    batches: tuple[Any, Any],
    out: Path,
    config: RunConfig,
    resume: bool,
    verbosity: int,
) -> dict[str, list[float]]:
    """``fit`` on (training, validation) ``batches`` into the folder ``out``; its history.

    Then, as on Ctrl-C once an epoch is finished, the final model and the curves are
    written. Ctrl-C raises a ``RunStopped`` (``interrupted``) saying where training stopped
    and what ``out`` keeps.
    """
    train_batches, validation_batches = batches
    shield = EpochEndShield()
    callbacks = shield.around(
        make_callbacks(out, resume, config.time_limit, config.schedule, config.lr, config.monitor)
    )
    folder, interrupted = RunFolder(out), False
    try:
        with brinelite.original_errors(), shield:
            network.fit(
                train_batches,
                steps_per_epoch=train_batches.steps_per_epoch(),
                validation_data=validation_batches,
                validation_steps=validation_batches.steps_per_epoch(),
                epochs=config.epochs,
                callbacks=callbacks,
                verbose=verbosity,
            )
    except KeyboardInterrupt:
        interrupted = True
    finished = folder.finished_epochs()
    where = f"interrupted in epoch {finished + 1} of {config.epochs}"
    if interrupted and not finished:
        raise RunStopped(
            f"{where}, before any epoch ended; nothing was kept", interrupted=True, resumable=False
        )
    folder.save_model(network)  # every process: saving gathers the weights
    folder.draw_curves(config.monitor)
    if interrupted:
        raise RunStopped(
            f"{where}: {out} keeps {finished} finished epoch(s) (history.csv, curves.png, "
            f"{BEST_WEIGHTS}; {FINAL_MODEL} holds the weights when interrupted); continue "
            "with --resume",
            interrupted=True,
        )
    return folder.history()
