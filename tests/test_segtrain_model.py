"""The U-Net builders, the Carvana presets, the model registry, and the losses and metrics."""

import keras
import numpy as np
import pytest

from segtrain.losses import bce_dice_loss, compile_model, dice, dice_loss, iou
from segtrain.models import (
    MODELS,
    build_model,
    get_unet_128,
    get_unet_256,
    get_unet_512,
    get_unet_1024,
    unet,
)

UNET_256_PARAMS = 34_614_369  # measured; deterministic for the Carvana 256 layout


@pytest.fixture(scope="module")
def unet256():
    return get_unet_256()


def conv_filters(model: keras.Model) -> list[int]:
    return [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def carvana_filters(levels: list[int]) -> list[int]:
    """The Conv2D widths of Carvana's hand-written layout: 2 per encoder level, 2 in the centre
    (1024), 3 per decoder level, then the 1-filter head."""
    encoder = [f for f in levels for _ in range(2)]
    decoder = [f for f in reversed(levels) for _ in range(3)]
    return encoder + [1024, 1024] + decoder + [1]


def test_unet256_preset_matches_carvana(unet256):
    assert unet256.input_shape == (None, 256, 256, 3)
    assert unet256.output_shape == (None, 256, 256, 1)
    assert unet256.count_params() == UNET_256_PARAMS
    assert abs(unet256.count_params() - 34.6e6) < 0.1e6
    assert conv_filters(unet256) == [
        32, 32, 64, 64, 128, 128, 256, 256, 512, 512,
        1024, 1024,
        512, 512, 512, 256, 256, 256, 128, 128, 128, 64, 64, 64, 32, 32, 32,
        1,
    ]  # fmt: skip
    assert unet256.layers[-1].activation is keras.activations.sigmoid


def test_unet256_preset_is_compiled_like_the_seed(unet256):
    assert isinstance(unet256.optimizer, keras.optimizers.RMSprop)
    assert float(unet256.optimizer.learning_rate) == pytest.approx(1e-4)
    assert unet256.loss is bce_dice_loss


@pytest.mark.parametrize(
    ("preset", "size", "levels"),
    [
        (get_unet_128, 128, [64, 128, 256, 512]),
        (get_unet_512, 512, [16, 32, 64, 128, 256, 512]),
        (get_unet_1024, 1024, [8, 16, 32, 64, 128, 256, 512]),
    ],
)
def test_other_presets_match_carvana(preset, size, levels):
    model = preset()
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, size, size, 1)
    assert conv_filters(model) == carvana_filters(levels)


@pytest.mark.parametrize(("size", "depth"), [(64, 2), (96, 5)])
def test_unet_general_shapes(size, depth):
    model = unet(size, base_filters=4, depth=depth, num_classes=2, centre_filters=12, channels=1)
    assert model.input_shape == (None, size, size, 1)
    assert model.output_shape == (None, size, size, 2)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == depth
    bottom = size // 2**depth
    assert pools[-1].output.shape == (None, bottom, bottom, 4 * 2 ** (depth - 1))
    assert conv_filters(model)[2 * depth : 2 * depth + 2] == [12, 12]


def test_unet_centre_defaults_to_base_times_two_to_the_depth():
    assert conv_filters(unet(32, base_filters=4, depth=3))[6:8] == [32, 32]


@pytest.mark.parametrize(("size", "depth", "divisor"), [(100, 4, 16), (250, 5, 32)])
def test_unet_rejects_indivisible_sizes(size, depth, divisor):
    message = (
        f"input size {size} is not divisible by 2\\*\\*depth = {divisor}; "
        f"pick a multiple of {divisor}"
    )
    with pytest.raises(ValueError, match=message):
        unet(size, depth=depth)


def test_models_registry_names():
    assert set(MODELS) == {"unet128", "unet256", "unet512", "unet1024", "small", "tiny",
                           "resnet18-unet", "resnet34-unet", "mobilenetv2-unet"}  # fmt: skip


def test_build_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'unet9'.*unet256.*small.*tiny"):
        build_model("unet9")


def test_build_model_preset_refuses_other_sizes():
    with pytest.raises(ValueError, match="unet256 takes input size 256 only"):
        build_model("unet256", 128)


@pytest.mark.parametrize(("name", "size"), [("tiny", 64), ("small", 48)])
def test_build_model_light_models_take_any_valid_size(name, size):
    model = build_model(name, size)
    assert model.output_shape == (None, size, size, 1)
    assert model.loss is bce_dice_loss


def test_build_model_light_default_size_is_128():
    assert build_model("tiny").input_shape == (None, 128, 128, 3)


def test_build_model_light_rejects_indivisible_size():
    with pytest.raises(ValueError, match="pick a multiple of 16"):
        build_model("small", 40)


def value(tensor) -> float:
    return float(keras.ops.convert_to_numpy(tensor))


def test_dice_of_identical_masks_is_one():
    mask = (np.random.default_rng(0).random((2, 16, 16, 1)) > 0.5).astype("float32")
    assert value(dice(mask, mask)) == pytest.approx(1.0)
    assert value(dice_loss(mask, mask)) == pytest.approx(0.0, abs=1e-6)


def test_dice_of_disjoint_masks_is_small():
    left = np.zeros((1, 16, 16, 1), "float32")
    left[:, :, :8] = 1
    right = 1 - left
    assert value(dice(left, right)) == pytest.approx(1 / 257)  # smooth / (128 + 128 + smooth)
    assert value(dice_loss(left, right)) > 0.99


def test_iou_and_dice_hand_computed():
    y_true = np.array([1, 1, 0, 0], "float32").reshape(1, 2, 2, 1)
    y_pred = np.array([1, 0, 1, 0], "float32").reshape(1, 2, 2, 1)
    # intersection 1, union 3, |A| + |B| = 4
    assert value(iou(y_true, y_pred)) == pytest.approx((1 + 1) / (3 + 1))
    assert value(iou(y_true, y_pred, smooth=0.0)) == pytest.approx(1 / 3)
    assert value(dice(y_true, y_pred)) == pytest.approx((2 + 1) / (4 + 1))
    assert value(dice(y_true, y_pred, smooth=0.0)) == pytest.approx(0.5)


def test_unsmoothed_scores_of_empty_masks():
    """Evaluation's per-image scores: the same functions, smooth=0; two empty masks agree."""
    empty = np.zeros((4, 4), bool)
    full = np.ones((4, 4), bool)
    for score in (dice, iou):
        assert value(score(empty, empty, smooth=0)) == 1.0
        assert value(score(full, empty, smooth=0)) == 0.0
        assert value(score(full, full, smooth=0)) == 1.0
    half = np.zeros((4, 4), bool)
    half[:2] = True
    assert value(dice(full, half, smooth=0)) == pytest.approx(2 * 8 / (16 + 8))
    assert value(iou(full, half, smooth=0)) == pytest.approx(0.5)


def test_evaluation_scores_with_the_training_metric(monkeypatch):
    import segtrain.losses
    from segtrain.tasks import BinaryMasks

    called = []
    monkeypatch.setattr(segtrain.losses, "dice", lambda *a, **k: called.append("dice") or 0.5)
    monkeypatch.setattr(segtrain.losses, "iou", lambda *a, **k: called.append("iou") or 0.25)
    scored = BinaryMasks().score([(0, "a.png", np.ones((4, 4)), np.full((4, 4), 255))], ())
    assert scored.per_image[0]["dice"] == 0.5 and scored.per_image[0]["iou"] == 0.25
    assert called == ["dice", "iou"] * 3  # the model's, all foreground's, all background's


def test_bce_dice_loss_is_bce_plus_one_minus_dice():
    t = np.array([1, 0, 1, 0], "float32")
    p = np.array([0.9, 0.2, 0.6, 0.1], "float32")
    bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    expected_dice = (2 * (0.9 + 0.6) + 1) / (2 + 1.8 + 1)
    loss = bce_dice_loss(t.reshape(1, 2, 2, 1), p.reshape(1, 2, 2, 1))
    assert value(keras.ops.mean(loss)) == pytest.approx(bce + 1 - expected_dice, rel=1e-5)


def test_compile_model_sets_the_seed_recipe():
    model = compile_model(unet(16, base_filters=2, depth=1), lr=3e-3)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)
    assert model.loss is bce_dice_loss


@pytest.mark.parametrize("name, kind", [("adam", "Adam"), ("adamw", "AdamW")])
def test_compile_model_takes_the_optimizer_by_name(name, kind):
    model = compile_model(unet(16, base_filters=2, depth=1), lr=2e-3, optimizer=name)
    assert type(model.optimizer) is getattr(keras.optimizers, kind)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)


def test_saved_model_loads_back_without_custom_objects(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 3), dtype="float32")
    y = (rng.random((2, 32, 32, 1)) > 0.5).astype("float32")
    model = build_model("tiny", 32)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and 0 <= logs["soft_dice"] <= 1

    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.models.load_model(path)

    assert loaded.loss is bce_dice_loss
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, y, verbose=0, return_dict=True)["soft_dice"] == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)["soft_dice"]
    )
