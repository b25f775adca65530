"""segtrain predict feeds the model exactly as training does, for any image bit depth."""

import cv2
import numpy as np

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
