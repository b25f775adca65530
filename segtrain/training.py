"""Train a U-Net on a brinelite dataset: the Carvana/chairs workflow, end to end, into a run.

    run = segtrain.train("demo/membrane", "runs/membrane", model="small", size=128)

The steps are those of the original Carvana/chairs workflow: open the dataset, split off a
validation fold (``create_folds((val,))``), feed both folds through ``to_keras`` with its processing
function (augmented for training only), build and compile the U-Net, and ``fit`` with its
callbacks (early stopping, learning-rate reduction, best-weights checkpoint) plus a CSV log and
TensorBoard logs. What the masks mean (binary, or the dataset's class map) is the run's
``segtrain.tasks.MaskTask``, which sets the head, the loss and how masks are read; the
processing is split in two stages so brinelite caches the deterministic one
(``segtrain.processing``). Every option is checked, and the run folder too, before Keras is
imported; ``segtrain.run_folder`` lists what the folder then holds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
from segtrain import distributed, runtime
from segtrain.config import RunConfig
from segtrain.datasets import check_columns, open_dataset
from segtrain.errors import RunStopped, SegtrainError
from segtrain.processing import make_processor
from segtrain.records import DatasetRecord, RunRecord
from segtrain.run_folder import BACKUP, BEST_WEIGHTS, FINAL_MODEL, HISTORY, LOGS, RunFolder
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


def make_callbacks(
    run_dir: str | Path,
    resume: bool = False,
    time_limit: float | None = None,
    schedule: str = "plateau",
    lr: float | None = None,
) -> list[keras.callbacks.Callback]:
    """Carvana's callbacks, writing into the run folder ``run_dir``, plus logs and a backup.

    With ``time_limit`` (minutes) a ``segtrain.time_limit.TimeLimit`` stops training once that
    much wall-clock time has passed (checked after every batch); with or without one, it
    records each epoch's batches (history.csv's ``batches`` and ``partial``) and the progress
    bar ends an epoch cut short where it stopped. ``schedule`` "plateau" is the
    Carvana workflow's EarlyStopping and ReduceLROnPlateau; "budget" (which needs ``time_limit`` and
    ``lr``) replaces both with a ``segtrain.budget_decay.BudgetDecay`` from ``lr`` to 0 over
    the time limit (the budget, not a validation stall, ends the run).

    On resume, the CSV log is appended to and the checkpoint only replaces the best weights
    with better ones than history.csv already records. TensorBoard logs need the tensorboard
    package and the TensorFlow backend (Keras writes them with ``tf.summary``); without either
    they are skipped with a warning rather than failing the run.
    """
    keras = runtime.import_keras()
    folder = RunFolder(Path(run_dir))
    folder.path.mkdir(parents=True, exist_ok=True)
    best_so_far = min(folder.history().get("val_loss", []), default=None) if resume else None
    if schedule == "budget":
        if time_limit is None or lr is None:
            raise ValueError('schedule "budget" decays from lr over time_limit; pass both')
        from segtrain.budget_decay import BudgetDecay

        # The budget ends the run: early stopping would end it at a noisy validation stall.
        schedule_callbacks = [BudgetDecay(60 * time_limit, lr=lr)]
    else:
        schedule_callbacks = [
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=8, min_delta=1e-4, verbose=1
            ),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.1, patience=4, min_delta=1e-4, verbose=1
            ),
        ]
    from segtrain.time_limit import EpochProgbar, TimeLimit

    callbacks = [
        # First: it adds the epoch's batch count to the logs the others (the CSV log) read.
        TimeLimit(None if time_limit is None else 60 * time_limit, verbose=1),
        # The previous epoch's backup is kept too: a process killed while saving (a peer lost,
        # the machine preempted) leaves a torn file, and resuming falls back on the other.
        keras.callbacks.BackupAndRestore(
            folder.path / BACKUP, double_checkpoint=True, delete_checkpoint=False
        ),
        *schedule_callbacks,  # before the CSV log, which records the rate they set
        keras.callbacks.ModelCheckpoint(
            folder.path / BEST_WEIGHTS,
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.CSVLogger(folder.path / HISTORY, append=resume),
    ]
    if runtime.backend() != "tensorflow":  # Keras writes TensorBoard logs with TensorFlow
        warnings.warn(
            f"no TensorBoard logs under the {runtime.backend()} backend (Keras writes them with "
            "TensorFlow); history.csv and curves.png hold the curves",
            stacklevel=2,
        )
    elif importlib.util.find_spec("tensorboard") is None:
        warnings.warn("no TensorBoard logs: the tensorboard package is not installed", stacklevel=2)
    else:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=folder.path / LOGS))
    # Last: an epoch's line is printed once its row, checkpoint and backup are written. It is
    # Keras' bar, except that an epoch cut short ends where it stopped.
    callbacks.append(EpochProgbar())
    return callbacks


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
    make_folds(data, config)  # refuses unknown splits and empty folds before Keras loads
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
    from segtrain.models import build_model

    runtime.set_seed(config.seed)  # first: every process then starts from the same seed
    distribution = start_distribution(config, dataset)
    with distribution.scope():
        network = build_model(
            config.model,
            config.size,
            precision=config.precision,
            lr=config.lr,
            xla=config.xla,
            optimizer=config.optimizer,
            task=task,
            encoder_weights=config.encoder_weights,
        )
    if resume:
        validation, training = folder.split(data)
    else:
        validation, training = make_folds(data, config)
    written = RunRecord(
        config=config,
        dataset=dataset,
        **task.record(),
        precision_requested=requested,
        global_batch=config.global_batch,
        backend=runtime.backend(),
        replicas=distribution.replicas,
        versions=runtime.versions(),
    )
    if verbosity:
        print(
            f"Training {config.model} at {config.size}x{config.size} on {dataset.ref} "
            f"({len(training)} training, {len(validation)} validation rows): precision "
            f"{config.precision} ({requested} asked), {written.backend} backend, "
            f"{distribution.replicas} replica(s), global batch {config.global_batch} "
            f"({config.num_processes} process(es) x {config.batch_size})"
            + (f"; this is process {config.process_id}." if config.num_processes > 1 else ".")
        )
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


class EpochEndShield:
    """Ctrl-C while an epoch's row, checkpoint and backup are written waits until they are.

    Otherwise an interrupt between the backup and the CSV row would leave a run whose backup
    is an epoch ahead of its history. Used as a context around ``fit`` (in the main thread;
    elsewhere Python delivers no signal), with ``begin`` and ``end`` called first and last at
    each epoch's end.
    """

    def __init__(self) -> None:
        self.shielded = self.pending = False
        self.previous: Any = None

    def __enter__(self) -> EpochEndShield:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _interrupt(self, signum: int, frame: Any) -> None:
        if not self.shielded:
            raise KeyboardInterrupt
        self.pending = True

    def begin(self) -> None:
        """An epoch's end starts: hold Ctrl-C."""
        self.shielded = True

    def end(self) -> None:
        """The epoch is written: a Ctrl-C held meanwhile interrupts now."""
        self.shielded = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


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
    keras = runtime.import_keras()
    train_batches, validation_batches = batches
    shield = EpochEndShield()
    callbacks = [
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: shield.begin()),
        *make_callbacks(out, resume, config.time_limit, config.schedule, config.lr),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: shield.end()),
    ]
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
    folder.draw_curves()
    if interrupted:
        raise RunStopped(
            f"{where}: {out} keeps {finished} finished epoch(s) (history.csv, curves.png, "
            f"{BEST_WEIGHTS}; {FINAL_MODEL} holds the weights when interrupted); continue "
            "with --resume",
            interrupted=True,
        )
    return folder.history()
