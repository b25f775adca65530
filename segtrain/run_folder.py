"""A run folder: what ``segtrain train`` leaves behind, where each file is, and reading it back.

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

``RunFolder`` reads each file capped (a run folder may come from anyone) and writes each
atomically; what the files mean is elsewhere: config.json in ``segtrain.records``,
history.csv in ``segtrain.history``, curves.png in ``segtrain.curves``. Nothing here needs
Keras except ``load_model``, so a run can be checked (``check_start``, ``trained``) before the
network is built.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
from segtrain import curves, history, runtime
from segtrain.config import RunConfig
from segtrain.errors import RunStopped, SegtrainError
from segtrain.records import DatasetRecord, RunRecord

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


def _flag(name: str) -> str:
    """A RunConfig field as the command line spells it: process_id -> --process-id."""
    return "--" + name.replace("_", "-")


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
        """history.csv as {column: values per epoch} (``segtrain.history.parse``); empty if
        there is none yet.

        Raises:
            SegtrainError: a history.csv that is no file, too large, or not numbers per epoch.
        """
        try:
            return history.parse(self._history_text())
        except (OSError, ValueError, TypeError) as exc:
            raise SegtrainError(
                f"{self.path / HISTORY} is not a history segtrain train wrote ({exc}); restore "
                "that file"
            ) from exc

    def _history_text(self) -> str:
        """history.csv's text, read capped; "" if there is no file."""
        try:
            return read_capped(self.path / HISTORY, HISTORY_BYTES).decode()
        except FileNotFoundError:
            return ""

    def upgrade_history(self) -> None:
        """Give an older run's history.csv today's columns (``segtrain.history.upgraded``), so
        a resumed run appends its values under the right names."""
        text = history.upgraded(self._history_text())
        if text is not None:
            with brinelite.atomic_write(self.path / HISTORY, newline="") as handle:
                handle.write(text)

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
            kept = finished > 0 or resume
            if not kept:
                self._undo(before)
            ours = isinstance(exc, SegtrainError | brinelite.BrineliteError)
            if not kept or not ours or isinstance(exc, RunStopped):
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

    def save_model(self, network: keras.Model) -> Path:
        """Write ``network`` into model.keras atomically (``brinelite.atomic_path``): a process
        killed while saving leaves the previous file whole, never a torn one. Its path."""
        path = self.path / FINAL_MODEL
        with brinelite.atomic_path(path, suffix=".tmp.keras") as tmp:  # Keras wants .keras
            network.save(tmp)
        return path

    def draw_curves(self, monitor: str) -> Path:
        """Draw history.csv into curves.png (``segtrain.curves.draw``), titled by ``title``,
        the best epoch marked by ``monitor`` (the run's)."""
        return curves.draw(self.history(), self.title(), self.path / CURVES, monitor)

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
