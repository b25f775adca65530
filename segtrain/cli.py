"""The ``segtrain`` command: train, evaluate and apply a U-Net on a brinelite dataset.

Each command is a thin layer over the Python API (segtrain.train, evaluate, predict). Errors are
caught once, in ``main``: a SegtrainError or BrineliteError (or a usage mistake) prints one line
on stderr and exits 1 (2 for usage), never a traceback. TensorFlow, which takes seconds to
import, is only imported by the command that needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from brinelite import BrineliteError
from brinelite.commandline import run_app
from segtrain.errors import SegtrainError

app = typer.Typer(
    help="Train, evaluate and apply U-Net segmentation models on brinelite datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()


def _load_tensorflow() -> None:
    """Import TensorFlow and initialise its devices with the process's stderr muted.

    On machines without CUDA, TensorFlow's C++ layer prints driver notices straight to file
    descriptor 2 (no setting silences them), which would bury our one-line errors. Python
    exceptions raised by the import still surface normally.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@app.command()
def train(
    dataset: Annotated[str, typer.Argument(help="A brinelite scope/name[@version] or folder.")],
    model: Annotated[
        str, typer.Option(help="unet128, unet256, unet512, unet1024 (own size), small or tiny.")
    ] = "unet256",
    size: Annotated[
        int | None, typer.Option(help="Input size (default: the model's); small: x16, tiny: x8.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per batch.", min=1)] = 1,
    val: Annotated[int, typer.Option(help="Validation rows, as in create_folds((N,)).")] = 20,
    epochs: Annotated[
        int, typer.Option(help="Most epochs (early stopping may end sooner).", min=1)
    ] = 100,
    lr: Annotated[float, typer.Option(help="RMSprop learning rate.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seeds split, weights, order, augmentation.")] = 42,
    augment: Annotated[bool, typer.Option(help="Augment training samples as the seed.")] = True,
    image_column: Annotated[str, typer.Option(help="The dataset's image column.")] = "image",
    mask_column: Annotated[str, typer.Option(help="The dataset's mask column.")] = "mask",
    strategy: Annotated[
        Literal["default", "mirrored", "multi-worker"],
        typer.Option(help="One device, all local GPUs (mirrored), or TF_CONFIG's workers."),
    ] = "default",
    precision: Annotated[
        Literal["auto", "float32", "mixed_bfloat16"],
        typer.Option(help="auto: mixed_bfloat16 only on CPUs with bf16 units."),
    ] = "auto",
    xla: Annotated[
        bool, typer.Option("--xla", help="Compile the train step with XLA (big models on CPU).")
    ] = False,
    run_dir: Annotated[Path, typer.Option("--out", help="The run folder to write.")] = Path(
        "runs/unet"
    ),
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train a U-Net on DATASET the seed's way and save the run folder."""
    _load_tensorflow()
    from segtrain.train import train as train_model

    result = train_model(
        dataset,
        run_dir,
        model=model,
        size=size,
        batch_size=batch_size,
        val=val,
        epochs=epochs,
        lr=lr,
        seed=seed,
        augment=augment,
        image_column=image_column,
        mask_column=mask_column,
        strategy=strategy,
        precision=precision,
        xla=xla,
        resume=resume,
    )
    losses = result.history.get("val_loss", [])
    if losses:
        best = min(range(len(losses)), key=losses.__getitem__)
        dice = result.history["val_dice_coeff"][best]
        out.print(f"Best epoch {best + 1}: val_loss {losses[best]:.4f}, val_dice {dice:.4f}.")
    out.print(f"Run folder: {result.run_dir}")


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
    """Score the run's best weights: per-image dice and IoU, and trivial baselines."""
    _load_tensorflow()
    from segtrain.evaluate import evaluate as evaluate_run

    report = evaluate_run(run_dir, dataset, fold, out_dir)
    typer.echo(f"{'row':>6}  {'dice':>6}  {'iou':>6}  image")
    for scores in report.per_image:
        typer.echo(
            f"{scores['row']:>6}  {scores['dice']:6.4f}  {scores['iou']:6.4f}  {scores['image']}"
        )
    summary = report.summary
    typer.echo(f"{summary['dataset']}, fold {fold}, {summary['images']} images:")
    for who in ("model", "all_foreground", "all_background"):
        scores = summary[who]
        typer.echo(f"  {who:<15} dice {scores['dice']:.4f}  iou {scores['iou']:.4f}")
    typer.echo(f"Wrote {report.csv_path} and {report.json_path}")


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
        float, typer.Option(help="Probability from which a pixel is foreground.", min=0, max=1)
    ] = 0.5,
) -> None:
    """Write a mask and a confidence overlay per image, and a contact sheet of overlays."""
    _load_tensorflow()
    from segtrain.evaluate import load_fold
    from segtrain.predict import image_files, predict_files
    from segtrain.train import load_model, read_config

    model = load_model(run_dir)
    if images:
        files = image_files(images)
    else:
        fold = load_fold(run_dir)
        column = read_config(run_dir)["image_column"]
        files = [fold.path / getattr(row, column) for row in fold]
    out_dir = out_dir or run_dir / "predictions"
    sheet = predict_files(model, files, out_dir, threshold)
    out.print(f"Wrote masks and overlays of {len(files)} images to {out_dir}")
    out.print(f"Contact sheet: {sheet}")


def main() -> None:
    """The ``segtrain`` console script; errors are one line on stderr, as brinelite's are."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no C++ log lines from TensorFlow
    run_app(app, (SegtrainError, BrineliteError))
