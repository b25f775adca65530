"""segtrain: train a Carvana-family U-Net on image/mask datasets.

Public names are imported lazily, on first use, so that ``import segtrain`` and the numpy-only
modules (segtrain.augment, segtrain.processing) do not load TensorFlow. The function ``unet`` is
not re-exported here: its name is taken by the submodule ``segtrain.unet``.
"""

import importlib

_EXPORTS = {
    "MODELS": "segtrain.unet",
    "build_model": "segtrain.unet",
    "get_unet_128": "segtrain.unet",
    "get_unet_256": "segtrain.unet",
    "get_unet_512": "segtrain.unet",
    "get_unet_1024": "segtrain.unet",
    "bce_dice_loss": "segtrain.losses",
    "compile_model": "segtrain.losses",
    "dice_coeff": "segtrain.losses",
    "dice_loss": "segtrain.losses",
    "iou": "segtrain.losses",
    "random_horizontal_flip": "segtrain.augment",
    "random_hue_saturation_value": "segtrain.augment",
    "random_shift_scale_rotate": "segtrain.augment",
    "fix_mask": "segtrain.processing",
    "make_processor": "segtrain.processing",
    "prepare_image": "segtrain.processing",
    "to_gray": "segtrain.processing",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import the module defining ``name`` on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'segtrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
