"""A run folder: what ``segtrain train`` leaves behind, and everything that reads it back.

    config.json       the RunConfig (size and precision resolved), the dataset, its class
                      map (``classes``: None for binary masks), the machine
    split.json        the row ids of the validation and training folds
    best.weights.h5   the weights with the lowest validation loss
    model.keras       the final model, after the last epoch
    history.csv       loss and dice per epoch, train and validation
    curves.png        those curves, drawn
    logs/             TensorBoard logs
    backup/           the last finished epoch's training state, read when resuming

config.json is a ``RunRecord`` (its dataset a ``DatasetRecord``), which reads and writes itself.
Nothing here needs Keras except ``load_model``, so a run can be checked (``check_start``,
``trained``) before the network is built.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import stat
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
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
                f"only {', '.join('--' + name for name in RunConfig.free_to_change())} may change"
            )

    def write_record(self, record: RunRecord) -> None:
        """Write config.json (creating the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG).write_text(json.dumps(record.to_json(), indent=2) + "\n")

    def write_split(self, validation: brinelite.Dataset, training: brinelite.Dataset) -> None:
        """Write split.json: the row ids of both folds."""
        rows = {"val": validation.indices.tolist(), "train": training.indices.tolist()}
        (self.path / SPLIT).write_text(json.dumps(rows) + "\n")

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

        Raises:
            SegtrainError: a history.csv that is no file, too large, or not numbers per epoch.
        """
        path = self.path / HISTORY
        try:
            text = read_capped(path, HISTORY_BYTES).decode()
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
            return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            raise SegtrainError(
                f"{path} is not a history segtrain train wrote ({exc}); restore that file"
            ) from exc

    def draw_curves(self) -> Path:
        """Plot loss and dice per epoch, train against validation, into curves.png."""
        from matplotlib.figure import Figure

        history = self.history()
        figure = Figure(figsize=(10, 4), layout="constrained")
        for axes, metric in zip(figure.subplots(1, 2), ("loss", "dice"), strict=True):
            for prefix, label in (("", "train"), ("val_", "validation")):
                values = history.get(prefix + metric, [])
                axes.plot(range(1, len(values) + 1), values, marker=".", label=label)
            axes.set(title=metric, xlabel="epoch")
            axes.grid(alpha=0.3)
            axes.legend()
        figure.savefig(self.path / CURVES, dpi=80)
        return self.path / CURVES

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
        # Keras warns of what it skips ("Skipping nested container ..."), then may go on with
        # untrained layers: recorded, such a warning is part of the refusal, not printed first.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")  # unused
            try:
                model.load_weights(weights)
            except ValueError as exc:  # the layers' shapes differ from the weights'
                raise SegtrainError(
                    f"{weights} does not fit the {config.model} model with {task.outputs} "
                    f"output(s) that {self.path / CONFIG} describes (was it edited?); restore "
                    "the file segtrain train wrote"
                ) from exc
            except (OSError, KeyError, TypeError) as exc:  # not HDF5, or another HDF5 layout
                raise not_ours from exc
        if any("Skipping" in str(warning.message) for warning in caught):
            raise not_ours
        for warning in caught:  # any other warning is shown as it would have been
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return model


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
