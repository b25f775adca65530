"""The ``segtrain`` command: train, evaluate and apply a U-Net on a brinelite dataset.

Each command is a thin layer over the Python API (segtrain.train, evaluate, predict). The train
options are not written here: they are the fields of ``segtrain.config.RunConfig`` (name, type,
default, help), turned into options by ``_train_signature``. Errors are caught once, in
``main``: a SegtrainError or BrineliteError (or a usage mistake) prints one line on stderr and
exits 1 (2 for usage), never a traceback. Keras and TensorFlow, which take seconds to import, are
only imported by the command that needs them, after its options are checked.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from brinelite import BrineliteError
from brinelite.commandline import Output, new_app, run_app
from segtrain.config import RunConfig
from segtrain.errors import SegtrainError

app = new_app(
    "Train, evaluate and apply U-Net segmentation models on brinelite datasets.",
    version=f"segtrain {importlib.metadata.version('brinelite')}",  # one distribution holds both
    no_args_is_help=True,
)
out = Output()
INTERRUPTED = 130  # the exit status of a command ended by Ctrl-C (128 + SIGINT)


def train(dataset: str, run_dir: Path, resume: bool, verbose: bool | None, **options: Any) -> None:
    """Train a U-Net on DATASET into a run folder, then score its best weights.

    The last lines are the best epoch's soft scores (what training optimises, at the
    training size) and the validation fold's scores as segtrain evaluate gives them
    (thresholded, at each image's full size). Ctrl-C keeps the finished epochs for --resume.
    """
    from segtrain.errors import RunStopped
    from segtrain.history import best_epoch, describe
    from segtrain.training import train as train_run

    keras_verbose = "auto" if verbose is None else int(verbose)
    try:
        result = train_run(dataset, run_dir, resume=resume, verbose=keras_verbose, **options)
    except RunStopped as stopped:
        if not stopped.interrupted:
            raise
        said = str(stopped)
        again = f": {resume_command()}" if stopped.resumable else ""
        Output(err=True).print(f"{said[:1].upper()}{said[1:]}{again}")
        raise typer.Exit(INTERRUPTED) from None
    monitor = result.config["monitor"]
    history, best = result.history, best_epoch(result.history, monitor)
    if best is not None:
        scores = ", ".join(f"{k} {history[k][best]:.4f}" for k in history if k.startswith("val_"))
        cut = " (cut short)" if history.get("partial", [0] * (best + 1))[best] == 1 else ""
        out.print(
            f"Best epoch {best + 1}{cut}, {describe(monitor)}; soft scores at the training size: "
            f"{scores}."
        )
    if result.evaluation is not None:
        evaluation = result.evaluation
        out.print(
            f"Validation fold, best weights, as segtrain evaluate scores them: "
            f"{evaluation.task.headline(evaluation.summary)}"
        )
    out.print(f"Run folder: {result.run_dir}")


def resume_command() -> str:
    """The command line that was run, with --resume: what continues an interrupted run."""
    words = ["segtrain", *sys.argv[1:]]
    return shlex.join(words if "--resume" in words else [*words, "--resume"])


def _train_signature() -> inspect.Signature:
    """``train``'s parameters as typer reads them: the fixed ones, then one per RunConfig field."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        ("dataset", str, typer.Argument(help="A brinelite scope/name[@version] or folder.")),
        ("run_dir", Path, typer.Option("runs/unet", "--out", help="The run folder to write.")),
        ("resume", bool, typer.Option(False, "--resume", help="Continue the run in --out.")),
        (
            "verbose",
            bool | None,
            typer.Option(
                None,
                "--verbose/--quiet",
                help="Progress bars, or nothing "
                "(default: bars on a terminal, else a line per epoch).",
            ),
        ),
    ]
    hints = typing.get_type_hints(RunConfig)
    fields = [
        (f.name, hints[f.name], typer.Option(f.default, help=f.metadata["help"]))
        for f in dataclasses.fields(RunConfig)
    ]
    return inspect.Signature(
        [
            inspect.Parameter(name, keyword, annotation=kind, default=info)
            for name, kind, info in fixed + fields
        ]
    )


train.__signature__ = _train_signature()
train.__annotations__ = {name: p.annotation for name, p in train.__signature__.parameters.items()}
app.command()(train)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by segtrain train.")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset to score on (default: the run's own).")
    ] = None,
    fold: Annotated[
        Literal["val", "all"], typer.Option(help="The run's validation rows, or all rows.")
    ] = "val",
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the CSV and JSON (default: RUN_DIR).")
    ] = None,
) -> None:
    """Score the run's best weights: per-image scores, and trivial baselines."""
    from segtrain.evaluation import evaluate as evaluate_run

    report = evaluate_run(run_dir, dataset, fold, out_dir)
    for line in report.table():
        out.print(line)
    written = ", ".join(map(str, (report.csv_path, report.json_path, *report.confusion_paths)))
    out.print(f"Wrote {written}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by segtrain train.")],
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files or folders (default: the run's validation images)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: RUN_DIR/predictions).")
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            help="Probability from which a pixel is foreground (binary masks only).", min=0, max=1
        ),
    ] = 0.5,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite masks, overlays or a sheet in --out.")
    ] = False,
) -> None:
    """Write a mask and an overlay per image, and a contact sheet of overlays.

    Binary: a 0/255 mask and the predicted mask over the photo, coloured by confidence.
    Class map: a mask of class ids and the classes' colours over the photo, with a legend.
    Without IMAGES (the run's validation images), the sheet shows each true mask beside its
    prediction, with the image's score. A failure writes nothing.
    """
    from segtrain.evaluation import load_fold
    from segtrain.prediction import check_outputs, image_files, predict_files
    from segtrain.run_folder import RunFolder

    folder = RunFolder(run_dir)
    record = folder.trained()
    masks = None
    if images:
        files = image_files(images)
    else:
        fold = load_fold(folder, record)
        columns = record.config.image_column, record.config.mask_column
        files, masks = ([fold.path / getattr(row, c) for row in fold] for c in columns)
    out_dir = out_dir or run_dir / "predictions"
    check_outputs(files, out_dir, force)
    model = folder.load_model(record)  # Keras loads here, after the checks
    sheet = predict_files(
        model,
        files,
        out_dir,
        threshold,
        task=record.task,
        force=force,
        masks=masks,
        title=folder.title(),
    )
    out.print(f"Wrote masks and overlays of {len(files)} images to {out_dir}")
    out.print(f"Contact sheet: {sheet}")


def main() -> None:
    """The ``segtrain`` console script; errors are one line on stderr, as brinelite's are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no C++ log lines from TensorFlow
    run_app(app, (SegtrainError, BrineliteError), extra="train")
