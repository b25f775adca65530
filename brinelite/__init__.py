"""brinelite: install, open and feed image/mask datasets.

    import brinelite as brine
    chairs = brine.load_dataset("rohan/chairs-with-masks")
    validation, train = chairs.create_folds((20,))
    model.fit(train.to_keras("image", "mask", processing_function=process), ...)

``import brinelite`` stays light: Keras and TensorFlow (torch) are imported only when
batches (samples) for them are requested (``Dataset.to_keras``, ``Dataset.to_torch``).
"""

from . import interrupt  # noqa: F401 - first: Ctrl-C while the brinelite command starts
from .atomic import atomic_path, atomic_write, write_text
from .build import build
from .classes import ClassMap
from .dataset import Dataset, list_datasets, load_dataset
from .errors import BrineliteError
from .images import IMAGE_SUFFIXES, read_image
from .install import install
from .keras_io import original_errors
from .preview import class_overlay
from .torch_io import WorkerError

__version__ = "0.1.0"
__all__ = [
    "IMAGE_SUFFIXES",
    "BrineliteError",
    "ClassMap",
    "Dataset",
    "WorkerError",
    "atomic_path",
    "atomic_write",
    "build",
    "class_overlay",
    "install",
    "list_datasets",
    "load_dataset",
    "original_errors",
    "read_image",
    "write_text",
]
