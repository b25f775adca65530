"""segtrain.callbacks: the best weights follow the run's --monitor."""

import numpy as np
import pytest

from segtrain.callbacks import record_callbacks, schedule_callbacks
from segtrain.models import build_model
from segtrain.run_folder import BEST_WEIGHTS, RunFolder

OVERFIT = [  # the loss rises while the overlap still improves
    {"loss": 0.4, "val_loss": 0.5, "val_soft_dice": 0.3},
    {"loss": 0.3, "val_loss": 0.7, "val_soft_dice": 0.6},
]


@pytest.mark.parametrize("monitor, kept", [("val_soft_dice", 1), ("val_loss", 0)])
def test_the_checkpoint_keeps_the_epoch_its_monitor_calls_best(tmp_path, monitor, kept):
    model = build_model("tiny", 16)
    checkpoint = record_callbacks(RunFolder(tmp_path), monitor=monitor)[0]
    checkpoint.set_model(model)
    weights = []
    for epoch, logs in enumerate(OVERFIT):
        model.set_weights([np.full_like(w, epoch + 1) for w in model.get_weights()])
        weights.append(model.get_weights())
        checkpoint.on_epoch_end(epoch, dict(logs))
    model.load_weights(tmp_path / BEST_WEIGHTS)
    np.testing.assert_array_equal(model.get_weights()[0], weights[kept][0])


def test_a_plateau_watches_the_monitor_at_its_own_end():
    stop, cut = schedule_callbacks("plateau", monitor="val_soft_dice")
    assert (stop.monitor, cut.monitor) == ("val_soft_dice", "val_soft_dice")
    assert (stop.mode, cut.mode) == ("max", "max")  # higher is better
