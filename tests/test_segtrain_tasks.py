"""What a mask means is one object per kind (segtrain.tasks): a new kind is one class."""

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from conftest import make_pairs

import brinelite
import segtrain
from segtrain import tasks
from segtrain.training import make_batches


@dataclass(frozen=True)
class DiscAndRim(tasks.BinaryMasks):
    """A toy multi-label kind: two independent labels per pixel, the disc and its rim."""

    kind: ClassVar[str] = "disc-and-rim"
    outputs = 2

    def finish_mask(self, mask: np.ndarray) -> np.ndarray:
        disc = super().finish_mask(mask)[..., 0].astype(np.uint8)
        rim = cv2.morphologyEx(disc, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        return np.stack([disc, rim], axis=-1).astype(np.float32)

    def decode(self, output: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Scored (training ends with it) and drawn by its disc label."""
        return super().decode(output[..., :1], shape)


def test_a_third_kind_of_mask_is_one_class_and_trains(tmp_path, monkeypatch):
    brinelite.install(str(make_pairs(tmp_path / "discs", 4, (16, 16))), name="gen/discs@1.0.0")
    monkeypatch.setattr(tasks, "KINDS", (DiscAndRim, *tasks.KINDS))
    assert isinstance(tasks.task_for(None), DiscAndRim)

    data = brinelite.load_dataset("gen/discs")
    config = segtrain.RunConfig(model="tiny", size=16, batch_size=2, val=2, augment=False)
    _, targets = next(make_batches(data, data, config)[0])
    disc, rim = targets[..., 0], targets[..., 1]  # the kind reads the masks
    assert targets.shape == (2, 16, 16, 2) and rim.sum() > 0 and not np.array_equal(rim, disc)

    run = segtrain.train("gen/discs", tmp_path / "run", model="tiny", size=16, batch_size=2,
                         val=2, epochs=1, precision="float32", verbose=0)  # fmt: skip
    assert run.model.output_shape == (None, 16, 16, 2)  # the head is the kind's
    assert len(run.history["loss"]) == 1 and np.isfinite(run.history["loss"][0])
    assert 0 <= run.evaluation.summary["model"]["dice"] <= 1  # scored as the kind decodes
