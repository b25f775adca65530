"""segtrain predict feeds the model exactly as training does, for any image bit depth."""

import cv2
import numpy as np
import pytest

import brinelite
from segtrain.prediction import image_files, predict_files
from segtrain.processing import make_processor
from segtrain.runtime import import_keras

keras = import_keras()


def first_channel_model(size: int) -> keras.Model:
    """A model whose 'probability' is its input's first channel: it shows what it was fed."""
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.Lambda(lambda x: x[..., :1])(inputs))


def test_a_16_bit_image_reaches_the_model_as_in_training(tmp_path):
    """Pixels of 200 in a 16-bit PNG: training sees 200/255; an 8-bit decoder would see 0."""
    image = np.zeros((16, 16), np.uint16)
    image[:, :8] = 200
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), image)

    trained_on, _ = make_processor(16, augment=False)(
        (brinelite.read_image(path).astype(np.float32), np.zeros((16, 16, 1), np.float32))
    )
    assert trained_on[0, 0, 0] == np.float32(200 / 255)

    predict_files(first_channel_model(16), image_files([tmp_path]), tmp_path / "out")
    mask = cv2.imread(str(tmp_path / "out" / "deep.mask.png"), cv2.IMREAD_UNCHANGED)
    assert (mask[:, :8] == 255).all() and (mask[:, 8:] == 0).all()
    assert brinelite.IMAGE_SUFFIXES  # the folder listing above used brinelite's suffixes


def test_overlay_leaves_the_photo_outside_the_mask_as_it_is():
    """Only the predicted mask is coloured (and outlined); it used to tint the whole photo."""
    import segtrain

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    probability = np.zeros((60, 80), np.float32)
    probability[20:40, 30:50] = 0.9
    drawn = segtrain.overlay(photo, probability)
    outside = np.ones((60, 80), bool)
    outside[17:43, 27:53] = False  # the mask, its outline and a margin
    np.testing.assert_array_equal(drawn[outside], photo[outside])
    assert (drawn[25:35, 35:45] != photo[25:35, 35:45]).any()


def test_a_failed_prediction_leaves_the_output_folder_as_it_was(tmp_path):
    """An image that does not decode after a chunk of others was written: nothing is kept."""
    from segtrain.prediction import CHUNK

    good = np.full((16, 16, 3), 200, np.uint8)
    for k in range(CHUNK):  # the first chunk is predicted and written before b.png is read
        assert cv2.imwrite(str(tmp_path / f"a{k:02d}.png"), good)
    (tmp_path / "b.png").write_bytes(b"not a png")
    files = image_files([tmp_path])
    with pytest.raises(brinelite.BrineliteError, match="b.png"):
        predict_files(first_channel_model(16), files, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(brinelite.BrineliteError):
        predict_files(first_channel_model(16), files, tmp_path / "kept")
    assert [path.name for path in (tmp_path / "kept").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("count", "grid"), [(1, (1, 1)), (3, (1, 3)), (6, (2, 3)), (7, (2, 4)), (16, (4, 4))]
)
def test_the_contact_sheet_grid_fits_the_count(count, grid):
    from segtrain.prediction import sheet_grid

    assert sheet_grid(count) == grid
    rows, columns = grid
    assert rows * columns - count < columns  # never a row left empty


def test_long_names_are_shortened_in_the_middle():
    from segtrain.prediction import shortened

    name = "cju0qkwl35piu0993l0dewei2-and-a-long-suffix_0042.jpg"
    short = shortened(name, 24)
    assert len(short) == 24 and short.startswith("cju0qkwl35") and short.endswith("_0042.jpg")
    assert shortened("a.png") == "a.png"
