"""config.json as typed records: ``RunRecord`` (the run) and ``DatasetRecord`` (its dataset).

A run folder may come from anyone, so each field is read by its declared type: a type with
``from_json`` (``RunConfig``, ``brinelite.ClassMap``, ``DatasetRecord``) parses its own value,
a JSON value must be of the field's type (a bool is no int; numbers are finite), and a field
missing from an older run takes its default. A new field is one line in its dataclass.

    record = RunRecord.from_json(json.loads(text), "runs/membrane/config.json")
    text = json.dumps(record.to_json())
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brinelite
from segtrain.config import RunConfig, fits
from segtrain.errors import SegtrainError
from segtrain.tasks import MaskTask, task_for


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
        if fits(value, option):
            return value
    raise SegtrainError(
        f"{where} has no valid {name} ({str(value)[:40]!r}); restore the file segtrain train wrote"
    )
