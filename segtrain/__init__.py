"""segtrain: train a Carvana-family U-Net on image/mask datasets.

    import segtrain
    run = segtrain.train("demo/membrane", "runs/membrane", model="small", size=128)
    report = segtrain.evaluate("runs/membrane")
    probabilities = segtrain.predict(segtrain.load_model("runs/membrane"), images)

Public names are imported lazily, on first use, so that ``import segtrain`` and the numpy-only
modules (segtrain.augment, segtrain.processing) do not load TensorFlow.

The functions ``train``, ``evaluate`` and ``predict`` share their names with the modules that
define them. Python binds a submodule to its package's attribute once it is imported, which would
turn ``segtrain.train`` into the module; the package's module type keeps the function there
instead (import the modules themselves with ``from segtrain.train import ...``). The function
``unet`` is not re-exported: ``segtrain.unet`` is the module.
"""

import importlib
import sys
import types

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
    "mask_to_gray": "segtrain.processing",
    "prepare_image": "segtrain.processing",
    "to_gray": "segtrain.processing",
    "TrainResult": "segtrain.train",
    "load_model": "segtrain.train",
    "make_callbacks": "segtrain.train",
    "train": "segtrain.train",
    "Evaluation": "segtrain.evaluate",
    "evaluate": "segtrain.evaluate",
    "overlay": "segtrain.predict",
    "predict": "segtrain.predict",
    "predict_files": "segtrain.predict",
    "SegtrainError": "segtrain.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import the module defining ``name`` on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'segtrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


class _Package(types.ModuleType):
    """segtrain's module type: a function wins over the submodule of the same name."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
