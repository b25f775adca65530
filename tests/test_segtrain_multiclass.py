"""segtrain on a class map: CamVid street frames end to end through the CLI, exact labels under
augmentation, a loss blind to void pixels, and the binary path unchanged by the two stages.

Uses real CamVid frames and label maps from shared/data/camvid (11 classes + void 11), downsized
to 160x120 (label maps with nearest neighbour) so a tiny model learns them in seconds.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA, make_pairs, one_line_error

import brinelite
from segtrain.augment import (
    random_horizontal_flip,
    random_hue_saturation_value,
    random_shift_scale_rotate,
)
from segtrain.config import RunConfig
from segtrain.processing import make_processor
from segtrain.semantic import class_weights
from segtrain.tasks import ClassMaps, fix_mask
from segtrain.training import make_batches

CAMVID = SHARED_DATA / "camvid"
NAMES = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
         "pedestrian", "bicyclist"]  # fmt: skip
VOID = 11
CLASS_MAP = {"classes": [{"id": k, "name": n} for k, n in enumerate(NAMES)], "ignore": VOID}
WIDTH, HEIGHT = 160, 120


def camvid_frames(dest: Path, count: int = 24) -> Path:
    """``count`` CamVid training frames spread over the split, at 160x120, with classes.json."""
    for sub in ("images", "masks"):
        (dest / sub).mkdir(parents=True)
    stems = (CAMVID / "split-train.txt").read_text().split()
    for stem in stems[:: len(stems) // count][:count]:
        image = cv2.imread(str(CAMVID / "images" / f"{stem}.png"))
        labels = cv2.imread(str(CAMVID / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        small = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(dest / "images" / f"{stem}.png"), small)
        small = cv2.resize(labels, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(dest / "masks" / f"{stem}.png"), small)
    (dest / "classes.json").write_text(json.dumps(CLASS_MAP))
    return dest


def png(path: Path) -> np.ndarray:
    """A PNG file's pixels; fails the test if it does not decode."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, f"{path} is not a valid image"
    return image


def test_camvid_build_show_train_evaluate_predict(cli, segtrain_cli, tmp_path):
    source = camvid_frames(tmp_path / "camvid")
    archive = tmp_path / "camvid.tar.gz"
    assert cli("build", source, "--name", "lab/camvid", "--out", archive, "-q").code == 0
    assert cli("install", archive, "-q").code == 0
    assert cli("show", "lab/camvid", "--out", tmp_path / "sheet.png", "--rows", "8").code == 0
    assert png(tmp_path / "sheet.png").shape[0] > 2 * 224  # two lines of tiles and a legend

    run = tmp_path / "run"
    trained = segtrain_cli(
        "train", "lab/camvid", "--model", "tiny", "--size", "64", "--batch-size", "4",
        "--val", "8", "--lr", "3e-3", "--epochs", "15", "--precision", "float32",
        "--class-weights", "none", "--out", run,
    )  # fmt: skip
    assert trained.code == 0, trained.err
    config = json.loads((run / "config.json").read_text())
    dataset = brinelite.load_dataset("lab/camvid")
    assert config["classes"] == dataset.manifest.classes.to_json()
    assert config["class_weights"] == "none" and config["class_weight_values"] is None
    with (run / "history.csv").open() as handle:
        assert {"soft_dice", "val_soft_dice", "loss", "val_loss"} <= set(
            next(csv.DictReader(handle))
        )

    evaluated = segtrain_cli("evaluate", run)
    assert evaluated.code == 0, evaluated.err
    assert "majority (road)" in evaluated.out
    summary = json.loads((run / "evaluation-val.json").read_text())
    assert summary["images"] == 8 and summary["classes"] == NAMES
    assert set(summary["per_class"]) == set(NAMES)
    assert summary["model"]["iou"] == summary["miou"]
    assert 0 <= summary["pixel_accuracy"] <= 1 and 0 <= summary["model"]["dice"] <= 1
    majority = summary["majority"]
    assert majority["class"] == "road"  # the training frames' most frequent class
    assert majority["per_class"]["road"]["iou"] > 0 and majority["per_class"]["sky"]["iou"] == 0
    assert summary["miou"] > 2 * majority["miou"], (summary["miou"], majority["miou"])
    with (run / "confusion-val.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == NAMES and [row[0] for row in rows[1:]] == NAMES
    labelled = sum(scores["pixels"] for scores in summary["per_class"].values())
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == labelled  # full-size, void left out
    assert png(run / "confusion-val.png").ndim == 3

    predicted = segtrain_cli("predict", run, source / "images", "--out", tmp_path / "predicted")
    assert predicted.code == 0, predicted.err
    for image in (source / "images").iterdir():
        mask = png(tmp_path / "predicted" / f"{image.stem}.mask.png")
        assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= set(range(len(NAMES)))
        assert png(tmp_path / "predicted" / f"{image.stem}.overlay.png").ndim == 3
    assert png(tmp_path / "predicted" / "contact_sheet.png").ndim == 3


def camvid_sample(stem: str) -> tuple[np.ndarray, np.ndarray]:
    """A full-size CamVid pair as brinelite's loader hands it: float32, values 0-255, HxWxC."""
    image = cv2.cvtColor(cv2.imread(str(CAMVID / "images" / f"{stem}.png")), cv2.COLOR_BGR2RGB)
    labels = cv2.imread(str(CAMVID / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    return image.astype(np.float32), labels[..., np.newaxis].astype(np.float32)


def test_augmented_label_maps_hold_only_declared_indices():
    classes = brinelite.ClassMap.from_json(CLASS_MAP)
    stems = (CAMVID / "split-train.txt").read_text().split()[:4]
    changed = 0
    for seed, stem in enumerate(stems * 4):
        process = make_processor(96, rng=np.random.default_rng(seed), task=ClassMaps(classes))
        prepared = process.prepare(camvid_sample(stem))
        image, mask = process.augment(tuple(np.array(part) for part in prepared))
        assert image.shape == (96, 96, 3) and mask.shape == (96, 96, 1)
        assert mask.dtype == np.uint8
        # Nearest neighbour only: no index that was not in the prepared map, except void borders.
        assert set(np.unique(mask)) <= set(np.unique(prepared[1])) | {classes.void_index}
        changed += not np.array_equal(mask[..., 0], prepared[1])
    assert changed >= 8  # the warps and flips did fire
    assert process.key == f"segtrain.prepare:v1:size=96:ids={','.join(map(str, range(11)))}"


def test_void_pixels_change_neither_the_loss_nor_the_metric():
    from segtrain.losses import SemanticLoss, class_dice

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 8, 8, 1))
    labels[:, :3] = 3  # void for three classes
    logits = rng.normal(size=(2, 8, 8, 3))
    other = logits.copy()
    other[:, :3] = rng.normal(size=(2, 3, 8, 3)) * 5  # other predictions on the void pixels only

    def softmax(x):
        return (np.exp(x) / np.exp(x).sum(-1, keepdims=True)).astype(np.float32)

    for loss in (SemanticLoss(), SemanticLoss(class_weights=[0.5, 2.0, 1.0])):
        value = float(loss(labels.astype(np.float32), softmax(logits)))
        assert value == pytest.approx(float(loss(labels.astype(np.float32), softmax(other))))
    assert float(class_dice(labels, softmax(logits))) == pytest.approx(
        float(class_dice(labels, softmax(other)))
    )
    # Without void, the loss is the mean cross-entropy plus 1 - dice.
    clean = labels.copy()
    clean[:, :3] = 1
    probabilities = softmax(logits)
    entropy = -np.log(np.take_along_axis(probabilities, clean, axis=-1)).mean()
    expected = entropy + 1 - float(class_dice(clean, probabilities))
    assert float(SemanticLoss()(clean.astype(np.float32), probabilities)) == pytest.approx(
        expected, rel=1e-5
    )


def test_median_frequency_weights_favour_rare_classes():
    shares = {"road": 0.6, "car": 0.3, "bicyclist": 0.1, "ignore": 0.2}
    classes = brinelite.ClassMap.from_json(
        {"classes": [{"id": 0, "name": "road"}, {"id": 1, "name": "car"},
                     {"id": 2, "name": "bicyclist"}], "ignore": 255, "shares": shares}
    )  # fmt: skip
    assert class_weights(classes, "auto") == pytest.approx([0.5, 1.0, 3.0])
    assert class_weights(classes, "sqrt") == pytest.approx([0.5**0.5, 1.0, 3.0**0.5])
    assert class_weights(classes, "none") is None


def test_a_class_map_of_one_class_is_refused_before_keras(cli, segtrain_cli, tmp_path):
    source = make_pairs(tmp_path / "discs", count=4)
    classes = {"classes": [{"id": 255, "name": "disc"}], "ignore": 0}
    (source / "classes.json").write_text(json.dumps(classes))
    assert cli("build", source, "--name", "gen/one", "--out", tmp_path / "one.tar.gz").code == 0
    assert cli("install", tmp_path / "one.tar.gz", "-q").code == 0
    result = segtrain_cli("train", "gen/one", "--model", "tiny", "--size", "32", "--val", "1")
    assert result.code == 1 and len(result.err.strip().splitlines()) == 1
    assert "at least two" in result.err


def seed_processing(sample, size, rng=None):
    """The one-stage processing as segtrain ran it before the two stages, for comparison."""
    image, mask = sample
    image = cv2.resize(np.ascontiguousarray(image[..., :3]), (size, size))
    mask = cv2.resize(fix_mask(np.asarray(mask, np.float32)), (size, size))
    if rng is not None:
        image = random_hue_saturation_value(image, (-50, 50), (0, 0), (-15, 15), rng=rng)
        image, mask = random_shift_scale_rotate(
            image, mask, (-0.0625, 0.0625), (-0.1, 0.1), (-20, 20), rng=rng
        )
        image, mask = random_horizontal_flip(image, mask, rng=rng)
    return image / 255, fix_mask(mask)[..., np.newaxis] / 255


def test_binary_two_stage_batches_are_the_one_stage_ones(tmp_path):
    brinelite.install(str(make_pairs(tmp_path / "discs", count=10)), name="gen/discs@1.0.0")
    data = brinelite.load_dataset("gen/discs")
    validation, training = data.create_folds((3,), shuffle=True, seed=0)
    config = RunConfig(model="tiny", size=32, batch_size=4, augment=False, seed=5)
    batches = make_batches(training, validation, config)
    for fold, made in zip((training, validation), batches, strict=True):
        reference = fold.to_keras(
            "image", "mask", 4, shuffle=fold is training, seed=5,
            processing_function=lambda sample: seed_processing(sample, 32),
        )  # fmt: skip
        for _ in range(2 * made.steps_per_epoch()):  # two epochs: the second from the cache
            (x, y), (x_ref, y_ref) = next(made), next(reference)
            assert x.dtype == x_ref.dtype and y.shape == y_ref.shape == (len(y), 32, 32, 1)
            np.testing.assert_array_equal(x, x_ref)
            np.testing.assert_array_equal(y, y_ref)
    assert batches[0].loader.preparation.store.location == "memory"
    sample = tuple(
        data.load_image(getattr(data[0], c)).astype(np.float32) for c in ("image", "mask")
    )
    for seed in range(4):
        ours = make_processor(32, rng=np.random.default_rng(seed))(sample)
        theirs = seed_processing(sample, 32, np.random.default_rng(seed))
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_augmented_training_batches_repeat_exactly_with_two_workers(tmp_path):
    brinelite.install(str(make_pairs(tmp_path / "discs", count=10)), name="gen/discs@1.0.0")
    data = brinelite.load_dataset("gen/discs")
    validation, training = data.create_folds((3,), shuffle=True, seed=0)

    def augmented(seed):
        config = RunConfig(model="tiny", size=32, batch_size=4, augment=True, seed=seed)
        made = make_batches(training, validation, config)[0]
        assert made.loader.workers == 2
        return [next(made)[0] for _ in range(2 * made.steps_per_epoch())]

    first = augmented(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, augmented(5), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, augmented(6), strict=True))


# The saved model also holds the optimizer's state, which a freshly compiled model has not
# built yet: Keras skips it and says so. Only the weights are compared here.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_a_class_map_model_has_a_float32_softmax_head_and_saves(tmp_path):
    import keras

    from segtrain.losses import SemanticLoss
    from segtrain.models import build_model

    four = brinelite.ClassMap.from_json({"classes": [{"id": k, "name": str(k)} for k in range(4)]})
    task = ClassMaps(four, weights=[1, 2, 3, 4])
    model = build_model("tiny", 32, precision="mixed_bfloat16", task=task)
    assert model.output_shape == (None, 32, 32, 4)
    head = model.layers[-1]
    assert head.activation is keras.activations.softmax and head.compute_dtype == "float32"
    assert isinstance(model.loss, SemanticLoss) and model.loss.class_weights == [1, 2, 3, 4]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.loss.class_weights == [1, 2, 3, 4]
    batch = np.random.default_rng(0).random((1, 32, 32, 3), np.float32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0))


# -- hostile or mistaken inputs around a class map's run: one line each, never silent nonsense --

TINY_RUN = ("--model", "tiny", "--size", "16", "--batch-size", "2", "--val", "2", "--epochs", "1",
            "--precision", "float32")  # fmt: skip


def labelled_discs(dest: Path, name: str, ids: tuple[int, int] | None) -> str:
    """Six generated disc pairs installed as ``name``: binary masks (``ids`` None), or masks of
    class ids (background ``ids[0]``, disc ``ids[1]``) with a classes.json naming them."""
    make_pairs(dest, count=6, size=(24, 24))
    if ids is not None:
        for path in (dest / "masks").iterdir():
            disc = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0
            cv2.imwrite(str(path), np.where(disc, ids[1], ids[0]).astype(np.uint8))
        entries = [{"id": ids[0], "name": "ground"}, {"id": ids[1], "name": "disc"}]
        (dest / "classes.json").write_text(json.dumps({"classes": entries}))
    brinelite.install(str(dest), name=name)
    return name


def test_scoring_masks_that_mean_other_things_than_the_runs_is_refused(tmp_path, segtrain_cli):
    """Before: a binary run thresholded class ids as 0/255 masks, and a class map's run scored
    binary masks or another class map's ids as all void: exit 0 and meaningless scores."""
    classes = labelled_discs(tmp_path / "classes", "gen/classes", (3, 200))
    binary = labelled_discs(tmp_path / "binary", "gen/binary", None)
    other = labelled_discs(tmp_path / "other", "gen/other", (0, 1))
    for data, run in ((classes, "c"), (binary, "b")):
        trained = segtrain_cli("train", data, *TINY_RUN, "--out", tmp_path / run)
        assert trained.code == 0, trained.err

    for run, data, words in (
        ("b", classes, ("trained on binary masks", "gen/classes@1.0.0 has a class map")),
        ("c", binary, ("class map of 2 classes", "gen/binary@1.0.0 has binary masks")),
        ("c", other, ("gen/other@1.0.0's classes are not the run's (3 ground, 200 disc)",)),
    ):
        out = tmp_path / f"scores-{run}-{data.split('/')[1]}"
        result = segtrain_cli("evaluate", tmp_path / run, "--dataset", data, "--fold", "all",
                              "--out", out)  # fmt: skip
        one_line_error(result, *words)
        assert not out.exists()
    assert segtrain_cli("evaluate", tmp_path / "c", "--fold", "all").code == 0


def test_a_tampered_run_folder_is_one_line(tmp_path, segtrain_cli):
    """Before: KeyError, TypeError and Keras ValueError tracebacks, or a silent mis-scoring."""
    data = labelled_discs(tmp_path / "classes", "gen/classes", (3, 200))
    trained = segtrain_cli("train", data, *TINY_RUN, "--out", tmp_path / "run")
    assert trained.code == 0, trained.err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    image = next((tmp_path / "classes" / "images").iterdir())

    def tampered(edit) -> Path:
        run = tmp_path / f"tampered-{len(list(tmp_path.glob('tampered-*')))}"
        shutil.copytree(tmp_path / "run", run)
        changed = json.loads(json.dumps(config))
        edit(changed)
        (run / "config.json").write_text(json.dumps(changed))
        return run

    extra = {"id": 9, "name": "extra"}
    cases = [
        (lambda c: c["classes"]["classes"].append(extra), "predict", "does not fit the tiny model"),
        (lambda c: c.update(classes=None), "predict", "with 1 output(s)"),
        (lambda c: c.update(model="small"), "evaluate", "does not fit the small model"),
        (lambda c: c["classes"]["classes"][0].update(id=9), "evaluate", "classes are not the run's"),
        (lambda c: c.pop("dataset"), "evaluate", "no valid record of the dataset"),
        (lambda c: c.update(dataset="x"), "predict-fold", "no valid record of the dataset"),
        (lambda c: c.pop("precision"), "predict", "lacks the size or precision"),
    ]  # fmt: skip
    for edit, command, words in cases:
        run = tampered(edit)
        images = [image] if command == "predict" else []  # predict-fold: the run's own images
        result = segtrain_cli(command.split("-")[0], run, *images, "--out", run / "out")
        one_line_error(result, words)
        assert not (run / "out").exists()
    run = tampered(lambda c: None)
    for rows in ('{"val": [99], "train": [0]}', '{"val": [-1], "train": [0]}'):
        (run / "split.json").write_text(rows)
        one_line_error(segtrain_cli("evaluate", run), "split.json does not hold the run's folds")
    (run / "taken").write_text("")
    for command in (("predict", run, image), ("evaluate", run, "--fold", "all")):
        one_line_error(segtrain_cli(*command, "--out", run / "taken"), "cannot write into")
