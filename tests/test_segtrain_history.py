"""history.csv read as numbers, an older one given today's columns, and its curves drawn:
pure functions and files, no Keras, no training."""

import math
import os
import stat

import cv2
import pytest

from segtrain import curves, history
from segtrain.errors import SegtrainError
from segtrain.run_folder import HISTORY, RunFolder

OLD = "epoch,dice,learning_rate,loss,val_dice,val_loss\r\n0,0.4,0.001,0.7,0.3,0.6\r\n"
NOW = (
    "epoch,batches,learning_rate,loss,partial,soft_dice,val_loss,val_soft_dice\r\n"
    "0,3,0.001,0.7,0,0.4,0.6,0.3\r\n1,2,0.001,0.5,1,0.5,0.4,0.4\r\n2,NA,0.001,0.4,0,0.6,NA,NA\r\n"
)


def test_a_history_reads_as_numbers_and_its_best_epoch_skips_missing_values():
    values = history.parse(NOW)
    assert values["epoch"] == [0.0, 1.0, 2.0] and values["batches"][:2] == [3.0, 2.0]
    assert math.isnan(values["batches"][2]) and math.isnan(values["val_loss"][2])
    assert history.best_epoch(values, "val_loss") == 1  # 0.4 < 0.6; a NaN is no minimum
    assert history.metrics(values) == ["loss", "soft_dice"]
    assert history.parse("") == {} and history.best_epoch({}, "val_soft_dice") is None


def test_the_best_epoch_is_the_monitors_highest_soft_dice_or_lowest_loss():
    overfit = {"val_loss": [0.5, 0.7, 0.9], "val_soft_dice": [0.3, 0.6, 0.5]}
    assert history.best_epoch(overfit, "val_soft_dice") == 1
    assert history.best_epoch(overfit, "val_loss") == 0
    assert history.describe("val_soft_dice") == "highest val_soft_dice"
    with pytest.raises(ValueError):
        history.parse("epoch,loss\r\n0,lots\r\n")


def test_an_older_history_gets_todays_columns_in_keras_order():
    assert history.upgraded(OLD) == (
        "epoch,batches,learning_rate,loss,partial,soft_dice,val_loss,val_soft_dice\r\n"
        "0,NA,0.001,0.7,NA,0.4,0.6,0.3\r\n"
    )
    assert history.upgraded(NOW) is None and history.upgraded("") is None


def test_upgrading_a_run_folders_history_replaces_it_whole(tmp_path):
    """Before: a NamedTemporaryFile renamed without fsync, mode 0600 (unreadable to others),
    and out of sight of the architecture test's check for writes in place."""
    (tmp_path / HISTORY).write_text(OLD, newline="")
    folder = RunFolder(tmp_path)
    folder.upgrade_history()
    assert (tmp_path / HISTORY).read_bytes() == history.upgraded(OLD).encode()
    assert stat.S_IMODE(os.stat(tmp_path / HISTORY).st_mode) == 0o644
    assert os.listdir(tmp_path) == [HISTORY]  # no temporary file left beside it
    assert folder.history()["soft_dice"] == [0.4]


def test_a_history_that_is_no_numbers_is_one_error_naming_the_file(tmp_path):
    (tmp_path / HISTORY).write_text("epoch,loss\r\n0,lots\r\n")
    with pytest.raises(SegtrainError, match="history.csv is not a history segtrain train wrote"):
        RunFolder(tmp_path).history()


def test_curves_draw_one_plot_per_metric(tmp_path):
    path = curves.draw(
        history.parse(NOW), "run: tiny at 16 px", tmp_path / "curves.png", "val_soft_dice"
    )
    image = cv2.imread(str(path))
    assert image.shape[:2] == (4 * 80, 2 * 5 * 80)  # loss and soft dice, 5 x 4 in at 80 dpi
    assert os.listdir(tmp_path) == ["curves.png"]
