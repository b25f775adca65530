"""A run folder: what ``segtrain train`` leaves behind, and everything that reads it back.

    config.json       the RunConfig (size and precision resolved), the dataset, its class
                      map (``classes``: None for binary masks), the machine
    split.json        the row ids of the validation and training folds
    best.weights.h5   the weights with the lowest validation loss
    model.keras       the final model, after the last epoch
    history.csv       per epoch: loss and soft dice, train and validation, the learning rate,
                      the batches run and whether the epoch was cut short (``partial``)
    curves.png        those curves, drawn, the best epoch and partial epochs marked
    logs/             TensorBoard logs
    backup/           the last finished epoch's training state, read when resuming

config.json is a ``RunRecord`` (its dataset a ``DatasetRecord``), which reads and writes itself.
Nothing here needs Keras except ``load_model``, so a run can be checked (``check_start``,
``trained``) before the network is built.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
from segtrain import runtime
from segtrain.config import RunConfig
from segtrain.errors import SegtrainError
from segtrain.tasks import MaskTask, task_for

if TYPE_CHECKING:
    import keras

CONFIG = "config.json"
SPLIT = "split.json"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = "model.keras"
HISTORY = "history.csv"
CURVES = "curves.png"
LOGS = "logs"
BACKUP = "backup"
METADATA = "training_metadata.json"  # Keras' BackupAndRestore record, in backup/

# history.csv columns of runs before the metric was named for what it is (soft, at train size)
RENAMED_COLUMNS = {"dice": "soft_dice", "val_dice": "val_soft_dice"}
EPOCH_COLUMNS = ("batches", "partial")  # segtrain.time_limit's, absent from older runs
MISSING = "NA"  # what Keras' CSVLogger writes for a value an epoch lacks
NOT_METRICS = {"epoch", "learning_rate", "loss", *EPOCH_COLUMNS}

# The most bytes segtrain reads of each file (a run folder may come from anyone): a few times
# what segtrain train writes. split.json's grows with the dataset: per row, an id and ", ".
CONFIG_BYTES = 1 << 20
SPLIT_BYTES = 1 << 10
SPLIT_BYTES_PER_ROW = 24
HISTORY_BYTES = 16 << 20
METADATA_BYTES = 1 << 20


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (a link is followed), at most ``limit`` of them.

    A device, a pipe or a folder (``split.json -> /dev/zero``) is refused without being read,
    and so is a file above ``limit`` bytes. A missing file raises FileNotFoundError, for the
    caller to say what is missing.

    Raises:
        SegtrainError: not a regular file, or more than ``limit`` bytes.

    Example::

        record = json.loads(read_capped(folder / CONFIG, CONFIG_BYTES))
    """
    restore = "restore the file segtrain train wrote"
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe does not block the open
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SegtrainError(f"{path} is not a regular file; {restore}")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SegtrainError(f"{path} is larger than segtrain reads ({limit} bytes); {restore}")
    return data


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


def open_dataset(name: str) -> brinelite.Dataset:
    """``brinelite.load_dataset(name)``, with one line for a folder that is no dataset yet.

    A raw images/ + masks/ folder (``brinelite show`` reads one) has no manifest: nothing pins
    its files, so a run could not find the same data again. It is refused with the command
    that installs it as a dataset; a path that does not exist is refused as a path, not as
    an invalid dataset name.

    Example::

        data = open_dataset("demo/membrane")
    """
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "manifest.json").is_file():
        stem = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._")
        suggested = f"local/{stem or 'dataset'}"
        raise SegtrainError(
            f"{name} is a folder but no brinelite dataset (it has no manifest.json); install it "
            f"as one first: brinelite install {name} --name {suggested} (then use {suggested})"
        )
    if name.startswith(("/", "./", "../", "~")) and not folder.exists():
        raise SegtrainError(f"no such dataset folder: {name}")
    return brinelite.load_dataset(name)


class RunStopped(SegtrainError):
    """A run that ended before its last epoch, by Ctrl-C (``interrupted``) or a failure.

    The message says what the run folder keeps and how to continue (``--resume``:
    ``resumable``), or that it was left as it was.
    """

    def __init__(self, message: str, interrupted: bool = False, resumable: bool = True) -> None:
        super().__init__(message)
        self.interrupted, self.resumable = interrupted, resumable


@dataclass(frozen=True)
class DatasetRecord:
    """How to find the exact dataset a run trained on again, as a brinelite lockfile pins it.

    ``source`` is the folder given (absolute) or the pinned ``ref`` (name@version); ``sha256``
    is the archive's it was installed from ("" for a folder); ``fingerprint`` the manifest's.
    """

    source: str
    ref: str
    sha256: str
    fingerprint: str
    rows: int

    @classmethod
    def of(cls, dataset: brinelite.Dataset, source: str) -> DatasetRecord:
        """The record of ``dataset``, opened from ``source`` (a name or a folder)."""
        ref = f"{dataset.name}@{dataset.version}"
        folder = Path(source).expanduser()
        return cls(
            source=str(folder.resolve()) if folder.is_dir() else ref,
            ref=ref,
            sha256=dataset.sha256,
            fingerprint=dataset.manifest.fingerprint,
            rows=len(dataset),
        )

    @classmethod
    def from_json(cls, value: Any, where: str) -> DatasetRecord:
        """The record as config.json holds it; a SegtrainError if it is not one."""
        try:
            return cls(**_fields_from_json(cls, value, where))
        except (SegtrainError, TypeError) as exc:
            raise SegtrainError(
                f"{where} has no valid record of the dataset the run trained on (source, ref, "
                "sha256, fingerprint, rows); restore the file segtrain train wrote"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        """The record as config.json holds it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunRecord:
    """config.json: the run's options, the dataset, what its masks mean, and the machine.

    The options (``RunConfig``, size and precision resolved) are top-level keys; every other
    field is one key, read and written by its type (a new field is one line here). Fields
    after ``dataset`` may be missing from older run folders.
    """

    config: RunConfig
    dataset: DatasetRecord
    classes: brinelite.ClassMap | None = None
    class_weight_values: list[float] | None = None
    precision_requested: str | None = None
    global_batch: int | None = None
    backend: str | None = None
    replicas: int | None = None
    versions: dict[str, str] | None = None

    @property
    def task(self) -> MaskTask:
        """What the run's masks mean (``segtrain.tasks``), from the class map it trained on."""
        return task_for(self.classes)

    @classmethod
    def from_json(cls, data: Any, where: str) -> RunRecord:
        """The record config.json holds; a SegtrainError saying what is wrong if it is not one.

        The options pass ``RunConfig``'s checks (types, choices, bounds), as when training.
        """
        if not isinstance(data, dict):
            raise SegtrainError(f"{where} does not hold a segtrain run config")
        try:
            config = RunConfig.from_dict(data)
        except SegtrainError as exc:
            raise SegtrainError(
                f"{where} holds options segtrain cannot use ({exc}); restore the file "
                "segtrain train wrote"
            ) from exc
        return cls(config=config, **_fields_from_json(cls, data, where, skip=("config",)))

    def to_json(self) -> dict[str, Any]:
        """The record as config.json holds it: the options, then one key per other field."""
        written = self.config.to_dict()
        for item in dataclasses.fields(self)[1:]:
            value = getattr(self, item.name)
            written[item.name] = value.to_json() if hasattr(value, "to_json") else value
        return written


def _flag(name: str) -> str:
    """A RunConfig field as the command line spells it: process_id -> --process-id."""
    return "--" + name.replace("_", "-")


def _fields_from_json(
    cls: type, data: Any, where: str, skip: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` read from the JSON object ``data``, each checked
    against its type: a type with ``from_json`` parses its own value; JSON values must be of
    the declared type. A missing field takes its default; without one it is read as None."""
    if not isinstance(data, dict):
        raise SegtrainError(f"{where}: expected an object, not {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name in skip:
            continue
        if item.name in data or item.default is dataclasses.MISSING:  # missing: None
            values[item.name] = _typed(item.name, hints[item.name], data.get(item.name), where)
    return values


def _typed(name: str, kind: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``kind`` (a union, a class with ``from_json``, or a JSON type)."""
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if hasattr(option, "from_json"):
            return option.from_json(value, where)
        if _fits(value, option):
            return value
    raise SegtrainError(
        f"{where} has no valid {name} ({str(value)[:40]!r}); restore the file segtrain train wrote"
    )


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value is of the type ``kind`` (str, int, float, list[...], dict[...]).

    A bool is no int, and an int is a float, as in JSON.
    """
    origin, arguments = typing.get_origin(kind) or kind, typing.get_args(kind)
    if origin is list:
        return isinstance(value, list) and all(_fits(item, arguments[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _fits(k, arguments[0]) and _fits(v, arguments[1]) for k, v in value.items()
        )
    if isinstance(value, bool) and origin is not bool:
        return False
    if origin is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, origin)


@dataclass(frozen=True)
class RunFolder:
    """The run folder at ``path`` (it may not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def exists(self) -> bool:
        """True if a run was started here (its config.json, written first, is there)."""
        return os.path.lexists(self.path / CONFIG)

    def _json(self, path: Path, limit: int) -> Any:
        """The JSON document in ``path``, read with ``read_capped``; ValueError if it is bad."""
        try:
            return json.loads(read_capped(path, limit))
        except RecursionError:
            raise ValueError("it nests arrays or objects too deeply") from None

    def record(self) -> RunRecord:
        """config.json as written by ``write_record``; a SegtrainError if there is none.

        It is read capped (``read_capped``) and its values checked (``RunRecord.from_json``).
        """
        if not self.exists():
            raise SegtrainError(f"{self.path} is not a segtrain run folder: it has no {CONFIG}")
        try:
            data = self._json(self.path / CONFIG, CONFIG_BYTES)
        except (OSError, ValueError) as exc:
            raise SegtrainError(f"{self.path / CONFIG} is not readable JSON ({exc})") from exc
        return RunRecord.from_json(data, str(self.path / CONFIG))

    def trained(self) -> RunRecord:
        """The record of a run that has best weights to load, checked without Keras.

        Raises:
            SegtrainError: no run folder, no best weights yet, or a config.json that lacks
                the size or precision the weights were trained at.
        """
        if not self.exists():
            raise SegtrainError(f"{self.path} is not a segtrain run folder: it has no {CONFIG}")
        if not (self.path / BEST_WEIGHTS).is_file():
            raise SegtrainError(
                f"{self.path} has no {BEST_WEIGHTS}: train (at least one epoch) first"
            )
        record = self.record()
        if record.config.size is None or record.config.precision == "auto":
            raise SegtrainError(
                f"{self.path / CONFIG} lacks the size or precision the run used; restore the "
                "file segtrain train wrote"
            )
        return record

    def check_start(self, config: RunConfig, dataset: DatasetRecord, resume: bool) -> None:
        """Refuse to overwrite a run, to resume none, or to resume with other run-defining options.

        ``config`` is resolved (``RunConfig.resolved``); ``dataset`` is the dataset's record.
        """
        if self.exists() and not resume:
            raise SegtrainError(
                f"{self.path} already holds a run; pass --resume to continue it, or another --out"
            )
        if resume and not self.exists():
            raise SegtrainError(f"nothing to resume: {self.path} has no {CONFIG}")
        if not resume:
            return
        saved = self.record()
        changed = config.changes_from(saved.config)
        if saved.dataset.fingerprint != dataset.fingerprint:
            changed.append(f"dataset {saved.dataset.ref} -> {dataset.ref}")
        if changed:
            raise SegtrainError(
                f"cannot resume {self.path} with other options ({'; '.join(changed)}); "
                f"only {', '.join(_flag(name) for name in RunConfig.free_to_change())} may change"
            )

    def write_record(self, record: RunRecord) -> None:
        """Write config.json (creating the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        brinelite.write_text(self.path / CONFIG, json.dumps(record.to_json(), indent=2) + "\n")

    def write_split(self, validation: brinelite.Dataset, training: brinelite.Dataset) -> None:
        """Write split.json: the row ids of both folds."""
        rows = {"val": validation.indices.tolist(), "train": training.indices.tolist()}
        brinelite.write_text(self.path / SPLIT, json.dumps(rows) + "\n")

    def split(self, dataset: brinelite.Dataset) -> tuple[brinelite.Dataset, brinelite.Dataset]:
        """The validation and training folds of ``dataset`` recorded in split.json.

        The file is read capped: ``SPLIT_BYTES`` plus ``SPLIT_BYTES_PER_ROW`` per row.
        """
        limit = SPLIT_BYTES + SPLIT_BYTES_PER_ROW * len(dataset)
        try:
            rows = self._json(self.path / SPLIT, limit)
            return dataset.subset(rows["val"]), dataset.subset(rows["train"])
        except (OSError, ValueError, KeyError, TypeError, brinelite.BrineliteError) as exc:
            raise SegtrainError(
                f"{self.path / SPLIT} does not hold the run's folds of {dataset.name} ({exc}); "
                "restore the file segtrain train wrote, or score every row with --fold all"
            ) from exc

    def finished_epochs(self) -> int:
        """Epochs the backup holds (Keras' BackupAndRestore metadata); 0 without a backup.

        Resuming starts at this epoch: the batches must then draw that epoch's order.
        """
        try:
            return int(self._json(self.path / BACKUP / METADATA, METADATA_BYTES)["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def history(self) -> dict[str, list[float]]:
        """history.csv as {column: values per epoch}; empty if there is none yet.

        A value an epoch lacks (Keras writes ``NA``; older runs' ``batches``) reads as NaN.

        Raises:
            SegtrainError: a history.csv that is no file, too large, or not numbers per epoch.
        """
        path = self.path / HISTORY
        try:
            rows = self._history_rows()
            return {
                key: [math.nan if row[key] == MISSING else float(row[key]) for row in rows]
                for key in (rows[0] if rows else {})
            }
        except (OSError, ValueError, TypeError) as exc:
            raise SegtrainError(
                f"{path} is not a history segtrain train wrote ({exc}); restore that file"
            ) from exc

    def _history_rows(self) -> list[dict[str, str]]:
        """history.csv's rows as text, read capped; none if there is no file."""
        try:
            text = read_capped(self.path / HISTORY, HISTORY_BYTES).decode()
        except FileNotFoundError:
            return []
        return list(csv.DictReader(io.StringIO(text, newline="")))

    def upgrade_history(self) -> None:
        """Give an older run's history.csv today's columns, so a resumed run appends in order.

        Keras' CSV log appends its values under its own sorted column names without reading
        the header; an older history (``dice`` and ``val_dice``, no ``batches``/``partial``)
        would get values under the wrong names. Renamed columns are renamed, missing ones
        filled with ``NA``, and the file rewritten in Keras' order (epoch, then sorted).
        """
        rows = self._history_rows()
        if not rows or set(EPOCH_COLUMNS) <= set(rows[0]):
            return
        rows = [{RENAMED_COLUMNS.get(k, k): v for k, v in row.items()} for row in rows]
        columns = ["epoch", *sorted(set(rows[0]) - {"epoch"} | set(EPOCH_COLUMNS))]
        with tempfile.NamedTemporaryFile(
            "w", dir=self.path, prefix=".history-", suffix=".csv", delete=False, newline=""
        ) as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval=MISSING)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(handle.name, self.path / HISTORY)

    @contextlib.contextmanager
    def kept_or_undone(self, resume: bool) -> Iterator[None]:
        """Leave the folder as it was if the run fails before its first epoch, else say so.

        A new run that fails (or is interrupted) before finishing an epoch removes every
        entry it added to the folder (the folder itself, if it made it), so the same command
        can simply be run again. Once an epoch is finished (or when resuming), the folder is
        kept and a segtrain or brinelite error becomes a ``RunStopped`` naming what is kept
        and ``--resume``; other exceptions (bugs) pass unchanged.
        """
        before = set(os.listdir(self.path)) if self.path.is_dir() else None
        try:
            yield
        except BaseException as exc:
            finished = self.finished_epochs()
            if finished == 0 and not resume:
                self._undo(before)
            if isinstance(exc, RunStopped | KeyboardInterrupt) or not isinstance(
                exc, SegtrainError | brinelite.BrineliteError
            ):
                raise
            if finished == 0 and not resume:
                raise
            raise RunStopped(
                f"{exc} ({self.path} keeps {finished} finished epoch(s); once this is fixed, "
                "continue with the same command and --resume)"
            ) from exc

    def _undo(self, before: set[str] | None) -> None:
        """Remove what a failed run added: the whole folder, or the entries not in ``before``."""
        if before is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - before:
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def best_epoch(self) -> int | None:
        """The epoch (0-based) whose weights best.weights.h5 holds: the lowest val_loss."""
        return best_epoch(self.history())

    def draw_curves(self) -> Path:
        """Plot loss and soft dice per epoch, train against validation, into curves.png.

        The title names the run (its folder), model and dataset; the best epoch (lowest
        val_loss, the weights best.weights.h5 holds) is marked on both plots, and epochs cut
        short (``--time-limit``: history's ``partial``) are hollow points.
        """
        from matplotlib.figure import Figure

        history = self.history()
        metrics = ["loss", *(k for k in history if k not in NOT_METRICS and "val_" + k in history)]
        figure = Figure(figsize=(5 * len(metrics), 4), layout="constrained")
        row = figure.subplots(1, len(metrics), squeeze=False)[0]
        for axes, metric in zip(row, metrics, strict=True):
            _plot_metric(axes, history, metric)
        figure.suptitle(self.title())
        with brinelite.atomic_write(self.path / CURVES, "wb") as png:
            figure.savefig(png, format="png", dpi=80)
        return self.path / CURVES

    def title(self) -> str:
        """The run's name in a figure's title: its folder, and its model and dataset if
        config.json says (``curves.png``, the contact sheet, the confusion matrix)."""
        name = self.path.resolve().name
        try:
            record = self.record()
        except SegtrainError:
            return name
        config = record.config
        return f"{name}: {config.model} at {config.size} px on {record.dataset.ref}"

    def load_model(self, record: RunRecord | None = None) -> keras.Model:
        """The run's model with its best weights (see ``segtrain.load_model``).

        ``record`` is the folder's ``trained()`` record, if the caller has checked it already.
        """
        record = record or self.trained()
        config, task = record.config, record.task
        from segtrain.models import build_model  # Keras loads here, after the checks

        model = build_model(config.model, config.size, precision=config.precision, task=task)
        weights = self.path / BEST_WEIGHTS
        not_ours = SegtrainError(f"{weights} is not a weights file segtrain wrote; restore it")
        try:
            runtime.load_weights(model, weights)
        except ValueError as exc:  # the layers' shapes differ from the weights'
            raise SegtrainError(
                f"{weights} does not fit the {config.model} model with {task.outputs} "
                f"output(s) that {self.path / CONFIG} describes (was it edited?); restore "
                "the file segtrain train wrote"
            ) from exc
        except (runtime.WeightsSkipped, OSError, KeyError, TypeError) as exc:  # another layout
            raise not_ours from exc
        return model


def best_epoch(history: dict[str, list[float]]) -> int | None:
    """The epoch (0-based) of a history with the lowest val_loss (the best weights'), or None."""
    losses = history.get("val_loss", [])
    kept = [k for k, value in enumerate(losses) if not math.isnan(value)]
    return min(kept, key=losses.__getitem__, default=None)


def _plot_metric(axes: Any, history: dict[str, list[float]], metric: str) -> None:
    """One metric's curves (train, validation) on ``axes``: partial epochs hollow, best marked."""
    from matplotlib.ticker import MaxNLocator

    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    partial = [flag == 1 for flag in history.get("partial", [0.0] * len(epochs))]
    whole = [not cut for cut in partial]
    for prefix, label in (("", "train"), ("val_", "validation")):
        values = history.get(prefix + metric, [])
        (line,) = axes.plot(epochs, values, label=label)
        axes.scatter(_pick(epochs, whole), _pick(values, whole), color=line.get_color(), s=12)
        hollow = {"facecolors": "white", "edgecolors": line.get_color(), "zorder": 3}
        axes.scatter(_pick(epochs, partial), _pick(values, partial), **hollow)
    if any(partial):  # one legend entry for both curves' hollow points
        axes.scatter([], [], facecolors="white", edgecolors="grey", label="epoch cut short")
    best = best_epoch(history)
    if best is not None:
        axes.axvline(
            epochs[best],
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"best: epoch {epochs[best]} (lowest val_loss)",
        )
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(title=metric.replace("_", " "), xlabel="epoch")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)


def _pick(values: list[Any], keep: list[bool]) -> list[Any]:
    """The values whose ``keep`` flag is set."""
    return [value for value, kept in zip(values, keep, strict=True) if kept]


def load_model(run_dir: str | Path) -> keras.Model:
    """The model of a run folder with its best weights, ready to predict.

    It is rebuilt from config.json, so a run still training (or interrupted) can be used as
    soon as its first epoch has written best.weights.h5.

    Args:
        run_dir: a folder written by ``segtrain.train``.

    Returns:
        The compiled Keras model, at the run's size and precision.

    Raises:
        SegtrainError: the folder is no run folder, or has no best weights yet.

    Example::

        model = segtrain.load_model("runs/membrane")
        probabilities = segtrain.predict(model, images)
    """
    return RunFolder(Path(run_dir)).load_model()
