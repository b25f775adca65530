"""The seed workflow through segtrain's Python API, on a tiny generated dataset of discs."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import make_pairs

import brinelite
import segtrain
from segtrain.history import best_epoch
from segtrain.masks import fix_mask, mask_to_gray
from segtrain.models import build_model
from segtrain.processing import make_processor
from segtrain.runtime import resolve_precision

SIZE = 32
# How close a reloaded model's validation loss comes to the one Keras logged, per dtype policy:
# float32 reproduces it; bf16 keeps 8 bits of mantissa, and oneDNN may order sums differently.
LOSS_TOLERANCE = {"float32": 1e-4, "mixed_bfloat16": 2e-2}


@pytest.fixture
def discs(tmp_path) -> str:
    """Twelve generated 48x64 disc pairs, installed as gen/discs@1.0.0."""
    brinelite.install(str(make_pairs(tmp_path / "discs", count=12)), name="gen/discs@1.0.0")
    return "gen/discs"


# The weights file also holds the optimizer's state, which a freshly compiled model has not
# built yet: Keras skips it and says so. Only the weights are compared here.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("precision", sorted(LOSS_TOLERANCE))
def test_seed_workflow(discs, tmp_path, precision):
    # Steps 2-6: the dataset, the model, the processing, the folds and the generators.
    data = brinelite.load_dataset(discs)
    assert len(data) == 12
    assert [(c.name, c.isimage()) for c in data.columns] == [("image", True), ("mask", True)]
    assert data.load_image(data[3].image).shape == (48, 64, 3)
    model = segtrain.build_model("tiny", SIZE)
    assert model.input_shape == (None, SIZE, SIZE, 3)
    assert model.output_shape == (None, SIZE, SIZE, 1)
    validation, training = data.create_folds((3,), seed=0)
    assert (len(validation), len(training)) == (3, 9)
    batches = training.to_keras(
        "image", "mask", batch_size=3, processing_function=make_processor(SIZE)
    )
    x, y = next(batches)
    assert x.shape == (3, SIZE, SIZE, 3) and y.shape == (3, SIZE, SIZE, 1)
    assert batches.steps_per_epoch() == 3
    assert set(np.unique(y)) <= {0.0, 1.0} and x.min() >= 0 and x.max() <= 1

    # Steps 7-8: train with the seed's callbacks.
    run = segtrain.train(
        discs, tmp_path / "run", model="tiny", size=SIZE, batch_size=3, val=3, epochs=4,
        lr=3e-3, seed=0, precision=precision, verbose=0,
    )  # fmt: skip
    losses = run.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert run.config["dataset"]["ref"] == "gen/discs@1.0.0"
    assert run.config["precision"] == precision

    # Step 9: the best weights (the epoch of the highest val_soft_dice, the default --monitor),
    # loaded into a fresh model, reproduce that epoch's validation loss; predicted maps come
    # back at the images' own size.
    fresh = segtrain.build_model("tiny", SIZE, precision=precision)
    fresh.load_weights(run.run_dir / "best.weights.h5")
    run_validation = data.subset(json.loads((run.run_dir / "split.json").read_text())["val"])
    val_batches = run_validation.to_keras(
        "image", "mask", batch_size=3, shuffle=False,
        processing_function=make_processor(SIZE, augment=False),
    )  # fmt: skip
    best = best_epoch(run.history, run.config["monitor"])
    assert run.config["monitor"] == "val_soft_dice"
    assert fresh.evaluate(val_batches, verbose=0, return_dict=True)["loss"] == pytest.approx(
        run.history["val_loss"][best], rel=LOSS_TOLERANCE[precision]
    )
    assert segtrain.load_model(run.run_dir).layers[-2].compute_dtype == (
        "bfloat16" if precision == "mixed_bfloat16" else "float32"
    )
    images = [run_validation.load_image(row.image) for row in run_validation]
    maps = segtrain.predict(fresh, images)
    assert [m.shape for m in maps] == [(48, 64)] * 3
    assert all(m.min() >= 0 and m.max() <= 1 for m in maps)


def test_red_on_blue_masks_keep_their_foreground():
    """The seed's masks: red = foreground on blue = background, both dark in plain grey."""
    mask = np.zeros((20, 30, 3), np.uint8)
    mask[..., 2] = 255  # blue background
    mask[5:15, 10:20] = (255, 0, 0)  # red square
    expected = np.zeros((20, 30), np.uint8)
    expected[5:15, 10:20] = 255
    np.testing.assert_array_equal(fix_mask(mask), expected)
    rgba = np.dstack([mask, np.full((20, 30), 255, np.uint8)])
    np.testing.assert_array_equal(fix_mask(rgba), expected)
    image = np.full((20, 30, 3), 128, np.float32)
    _, processed = make_processor(32, augment=False)((image, mask.astype(np.float32)))
    assert processed.shape == (32, 32, 1) and 0.12 < processed.mean() < 0.2  # 100 of 600 px


def test_grey_masks_use_their_grey_value():
    grey = np.zeros((4, 4, 3), np.uint8)
    grey[:2] = 200
    np.testing.assert_array_equal(mask_to_gray(grey), grey[..., 0])
    np.testing.assert_array_equal(mask_to_gray(grey[..., :1]), grey[..., 0])


def test_mixed_precision_keeps_a_float32_head():
    model = build_model("tiny", SIZE, precision="mixed_bfloat16")
    assert model.layers[-2].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    assert model(np.zeros((1, SIZE, SIZE, 3), np.float32)).dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # restored after building


WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n"
WITH_AMX = "flags\t\t: fpu sse2 amx_bf16 amx_tile\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\nbugs\t\t: avx512_bf16_x\n"


@pytest.mark.parametrize(
    ("cpuinfo", "chosen"),
    [
        (WITH_BF16, "mixed_bfloat16"),
        (WITH_AMX, "mixed_bfloat16"),
        (WITHOUT, "float32"),
        ("", "float32"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(cpuinfo, chosen):
    assert resolve_precision("auto", cpuinfo=cpuinfo) == chosen
    for forced in ("float32", "mixed_bfloat16"):
        assert resolve_precision(forced, cpuinfo=cpuinfo) == forced
    config = segtrain.RunConfig(model="tiny").resolved(cpuinfo=cpuinfo)
    assert (config.precision, config.size) == (chosen, 128)


def test_import_segtrain_is_light():
    code = "import sys, segtrain; assert 'tensorflow' not in sys.modules, 'TensorFlow loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_functions_are_functions():
    import segtrain.evaluation
    import segtrain.prediction
    import segtrain.training  # noqa: F401 (binds the submodules: no name may be shadowed)

    assert segtrain.train.__name__ == "train" and callable(segtrain.train)
    assert callable(segtrain.evaluate) and callable(segtrain.predict)
    assert callable(segtrain.unet) and callable(segtrain.load_model)


def test_mask_and_drawing_helpers_keep_their_names_where_they_were():
    import segtrain.masks
    import segtrain.overlays
    import segtrain.tasks

    for name in ("fix_mask", "mask_to_gray", "to_gray"):
        assert getattr(segtrain, name) is getattr(segtrain.masks, name)
        assert getattr(segtrain.tasks, name) is getattr(segtrain.masks, name)
    for name in ("probability_overlay", "outline", "COLORMAP", "OUTLINE"):
        assert getattr(segtrain.tasks, name) is getattr(segtrain.overlays, name)
    assert segtrain.tasks.THRESHOLD == segtrain.masks.THRESHOLD == 0.5


JAX_RUN = """
import sys
import brinelite, segtrain
run = segtrain.train("gen/discs", sys.argv[1], model="tiny", size=32, batch_size=4, val=4,
                     epochs=2, lr=3e-3, seed=0, precision="float32", verbose=0)
report = segtrain.evaluate(sys.argv[1])
data = brinelite.load_dataset("gen/discs")
maps = segtrain.predict(segtrain.load_model(sys.argv[1]), [data.load_image(data[0].image)])
import keras
print(keras.config.backend(), run.config["backend"], len(run.history["val_soft_dice"]),
      report.summary["images"], maps[0].shape)
"""


def test_jax_backend_trains_evaluates_and_predicts(discs, tmp_path):
    """The same training on Keras' JAX backend: segtrain's model, losses and data work there.

    (Keras itself still imports TensorFlow to seed it when installed; its banner stays muted.)
    """
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, "-c", JAX_RUN, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["jax", "jax", "2", "4", "(48,", "64)"]
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["versions"]["jax"]
