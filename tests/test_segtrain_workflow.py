"""The seed workflow through segtrain's Python API, on a tiny generated dataset of discs."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_pairs

import brinelite
import segtrain
from segtrain.processing import fix_mask, make_processor, mask_to_gray
from segtrain.train import build, resolve_precision

SIZE = 32


@pytest.fixture
def discs(tmp_path) -> str:
    """Twelve generated 48x64 disc pairs, installed as gen/discs@1.0.0."""
    brinelite.install(str(make_pairs(tmp_path / "discs", count=12)), name="gen/discs@1.0.0")
    return "gen/discs"


def test_seed_workflow(discs, tmp_path):
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
        lr=3e-3, seed=0, verbose=0,
    )  # fmt: skip
    losses = run.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert run.config["dataset"]["ref"] == "gen/discs@1.0.0"

    # Step 9: the best weights, loaded into a fresh model, reproduce the best epoch's validation
    # loss; predicted maps come back at the images' own size.
    fresh = segtrain.build_model("tiny", SIZE)
    fresh.load_weights(run.run_dir / "best.weights.h5")
    run_validation = data.subset(json.loads((run.run_dir / "split.json").read_text())["val"])
    val_batches = run_validation.to_keras(
        "image", "mask", batch_size=3, shuffle=False,
        processing_function=make_processor(SIZE, augment=False),
    )  # fmt: skip
    assert fresh.evaluate(val_batches, verbose=0, return_dict=True)["loss"] == pytest.approx(
        min(run.history["val_loss"]), rel=1e-4
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
    model = build("tiny", SIZE, "mixed_bfloat16")
    assert model.layers[-2].compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    assert model(np.zeros((1, SIZE, SIZE, 3), np.float32)).dtype == "float32"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after building


def test_auto_precision_follows_the_cpu_flags():
    flags = Path("/proc/cpuinfo").read_text()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert resolve_precision("auto") == ("mixed_bfloat16" if native else "float32")
    assert resolve_precision("float32") == "float32"
    with pytest.raises(segtrain.SegtrainError, match="unknown precision"):
        resolve_precision("float16")


def test_import_segtrain_is_light():
    code = "import sys, segtrain; assert 'tensorflow' not in sys.modules, 'TensorFlow loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_functions_win_over_their_modules():
    import segtrain.evaluate
    import segtrain.predict
    import segtrain.train  # noqa: F401 (binds the submodules, which must not shadow the functions)

    assert segtrain.train.__name__ == "train" and callable(segtrain.train)
    assert callable(segtrain.evaluate) and callable(segtrain.predict)


def test_brinelite_errors_come_out_of_tf_data_unwrapped():
    import tensorflow as tf

    from segtrain.train import brinelite_errors_unwrapped

    wrapped = (
        "Graph execution error:\n\nTraceback (most recent call last):\n  ...\n"
        "brinelite.errors.DataError: Image /data/images/003.png cannot be decoded.\n\n"
        "\t [[{{node PyFunc}}]]"
    )
    decoding = pytest.raises(brinelite.errors.DataError, match=r"^Image /data/images/003.png ")
    with decoding, brinelite_errors_unwrapped():
        raise tf.errors.UnknownError(None, None, wrapped)
    with pytest.raises(tf.errors.UnknownError), brinelite_errors_unwrapped():
        raise tf.errors.UnknownError(None, None, "some other failure")


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
        ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),
    ],
)
def test_only_the_chief_writes_the_run_folder(cluster, task, chief):
    import tensorflow as tf

    from segtrain.train import is_chief

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task[0], task_id=task[1]
    )
    strategy = type("Strategy", (), {"cluster_resolver": resolver})()
    assert is_chief(strategy) is chief
    assert is_chief(tf.distribute.get_strategy())
