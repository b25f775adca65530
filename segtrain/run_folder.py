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

Nothing here needs Keras except ``load_model``, so a run can be checked (``check_start``) before
the network is built.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import brinelite
from segtrain.config import RunConfig
from segtrain.errors import SegtrainError
from segtrain.semantic import num_outputs

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


def dataset_record(dataset: brinelite.Dataset, source: str) -> dict[str, Any]:
    """How to find this exact dataset again: the folder given, or its pinned name@version.

    ``ref``, ``sha256`` (of the archive it was installed from; "" for a folder) and
    ``fingerprint`` pin it, as a brinelite lockfile does.
    """
    ref = f"{dataset.name}@{dataset.version}"
    folder = Path(source).expanduser()
    return {
        "source": str(folder.resolve()) if folder.is_dir() else ref,
        "ref": ref,
        "sha256": dataset.sha256,
        "fingerprint": dataset.manifest.fingerprint,
        "rows": len(dataset),
    }


@dataclass(frozen=True)
class RunFolder:
    """The run folder at ``path`` (it may not exist yet)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def exists(self) -> bool:
        """True if a run was started here (its config.json is written first)."""
        return (self.path / CONFIG).is_file()

    def record(self) -> dict[str, Any]:
        """config.json as written by ``write_record``; a SegtrainError if there is none."""
        if not self.exists():
            raise SegtrainError(f"{self.path} is not a segtrain run folder: it has no {CONFIG}")
        try:
            record = json.loads((self.path / CONFIG).read_text())
        except (OSError, ValueError) as exc:
            raise SegtrainError(f"{self.path / CONFIG} is not readable JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise SegtrainError(f"{self.path / CONFIG} does not hold a segtrain run config")
        return record

    def dataset(self) -> dict[str, Any]:
        """config.json's record of the dataset the run trained on (see ``dataset_record``)."""
        recorded = self.record().get("dataset")
        if not isinstance(recorded, dict) or not all(
            isinstance(recorded.get(key), str) for key in ("source", "ref", "fingerprint")
        ):
            raise SegtrainError(
                f"{self.path / CONFIG} has no valid record of the dataset the run trained on "
                "(source, ref, fingerprint); restore the file segtrain train wrote"
            )
        return recorded

    def config(self) -> RunConfig:
        """The run's options, as recorded."""
        return RunConfig.from_dict(self.record())

    def classes(self) -> brinelite.ClassMap | None:
        """The class map the run trained on (None: binary masks), as config.json records it."""
        recorded = self.record().get("classes")
        return None if recorded is None else brinelite.ClassMap.from_json(recorded, CONFIG)

    def check_start(self, config: RunConfig, dataset: dict[str, Any], resume: bool) -> None:
        """Refuse to overwrite a run, to resume none, or to resume with other run-defining options.

        ``config`` is resolved (``RunConfig.resolved``); ``dataset`` is its ``dataset_record``.
        """
        if self.exists() and not resume:
            raise SegtrainError(
                f"{self.path} already holds a run; pass --resume to continue it, or another --out"
            )
        if resume and not self.exists():
            raise SegtrainError(f"nothing to resume: {self.path} has no {CONFIG}")
        if not resume:
            return
        changed = config.changes_from(self.config())
        saved = self.dataset()
        if saved["fingerprint"] != dataset["fingerprint"]:
            changed.append(f"dataset {saved['ref']} -> {dataset['ref']}")
        if changed:
            raise SegtrainError(
                f"cannot resume {self.path} with other options ({'; '.join(changed)}); "
                f"only {', '.join('--' + name for name in RunConfig.free_to_change())} may change"
            )

    def write_record(self, record: dict[str, Any]) -> None:
        """Write config.json (creating the folder)."""
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG).write_text(json.dumps(record, indent=2) + "\n")

    def write_split(self, validation: brinelite.Dataset, training: brinelite.Dataset) -> None:
        """Write split.json: the row ids of both folds."""
        rows = {"val": validation.indices.tolist(), "train": training.indices.tolist()}
        (self.path / SPLIT).write_text(json.dumps(rows) + "\n")

    def split(self, dataset: brinelite.Dataset) -> tuple[brinelite.Dataset, brinelite.Dataset]:
        """The validation and training folds of ``dataset`` recorded in split.json."""
        try:
            rows = json.loads((self.path / SPLIT).read_text())
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
        metadata = self.path / BACKUP / "training_metadata.json"
        try:
            return int(json.loads(metadata.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def history(self) -> dict[str, list[float]]:
        """history.csv as {column: values per epoch}; empty if there is none yet."""
        path = self.path / HISTORY
        if not path.is_file():
            return {}
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {})}

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

    def load_model(self) -> keras.Model:
        """The run's model with its best weights (see ``segtrain.load_model``)."""
        weights = self.path / BEST_WEIGHTS
        if not weights.is_file():
            raise SegtrainError(
                f"{self.path} has no {BEST_WEIGHTS}: train (at least one epoch) first"
            )
        config = self.config()
        if config.size is None or config.precision == "auto":
            raise SegtrainError(
                f"{self.path / CONFIG} lacks the size or precision the run used; restore the "
                "file segtrain train wrote"
            )
        from segtrain.models import build_model  # Keras loads here, after the checks

        outputs = num_outputs(self.classes())
        model = build_model(
            config.model, config.size, precision=config.precision, num_classes=outputs
        )
        with warnings.catch_warnings():  # the file also holds the optimizer's state, unused here
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            try:
                model.load_weights(weights)
            except ValueError as exc:  # the layers' shapes differ from the weights'
                raise SegtrainError(
                    f"{weights} does not fit the {config.model} model with {outputs} output(s) "
                    f"that {self.path / CONFIG} describes (was it edited?); restore the file "
                    "segtrain train wrote"
                ) from exc
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
