"""segtrain: train a Carvana-family U-Net on image/mask datasets.

    import segtrain
    run = segtrain.train("demo/membrane", "runs/membrane", model="small", size=128)
    report = segtrain.evaluate("runs/membrane")
    probabilities = segtrain.predict(segtrain.load_model("runs/membrane"), images)

Public names are imported lazily, on first use, so that ``import segtrain`` and the numpy-only
modules (segtrain.augment, segtrain.processing, segtrain.config) do not load Keras or
TensorFlow. Keras is loaded by ``segtrain.runtime``, with TensorFlow's C++ start-up banner muted.
The modules are named for what they hold (training, evaluation, prediction, models, ...), so the
functions ``segtrain.train``, ``evaluate``, ``predict`` and ``unet`` are never shadowed by them.
"""

import importlib

_EXPORTS = {
    "MODELS": "segtrain.models",
    "build_model": "segtrain.models",
    "get_unet_128": "segtrain.models",
    "get_unet_256": "segtrain.models",
    "get_unet_512": "segtrain.models",
    "get_unet_1024": "segtrain.models",
    "unet": "segtrain.models",
    "bce_dice_loss": "segtrain.losses",
    "compile_model": "segtrain.losses",
    "compile_semantic": "segtrain.losses",
    "SemanticLoss": "segtrain.losses",
    "class_dice": "segtrain.losses",
    "dice": "segtrain.losses",
    "dice_loss": "segtrain.losses",
    "iou": "segtrain.losses",
    "random_horizontal_flip": "segtrain.augment",
    "random_hue_saturation_value": "segtrain.augment",
    "random_shift_scale_rotate": "segtrain.augment",
    "fix_mask": "segtrain.masks",
    "make_processor": "segtrain.processing",
    "Processor": "segtrain.processing",
    "mask_to_gray": "segtrain.masks",
    "prepare_image": "segtrain.processing",
    "to_gray": "segtrain.masks",
    "to_rgb": "segtrain.processing",
    "RunConfig": "segtrain.config",
    "TrainResult": "segtrain.training",
    "make_callbacks": "segtrain.callbacks",
    "train": "segtrain.training",
    "load_model": "segtrain.run_folder",
    "Evaluation": "segtrain.evaluation",
    "evaluate": "segtrain.evaluation",
    "overlay": "segtrain.prediction",
    "predict": "segtrain.prediction",
    "predict_classes": "segtrain.prediction",
    "predict_files": "segtrain.prediction",
    "SegtrainError": "segtrain.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import the module defining ``name`` on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'segtrain' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
