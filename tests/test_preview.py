"""brinelite show: which samples, and how binary masks are drawn."""

import cv2
import numpy as np
from conftest import make_pairs

import brinelite
from brinelite.preview import BACKGROUND, GAP, TILE, TITLE, pick_rows

CELL = TITLE + 168  # a 48x64 image scaled to 224 wide is 168 high


def sheet(cli, name, tmp_path, *options):
    out = tmp_path / f"sheet{'-'.join(options)}.png"
    result = cli("show", name, "--out", out, *options)
    assert result.code == 0, result.err
    return cv2.imread(str(out))


def test_n_and_seed_pick_the_samples(cli, tmp_path):
    """Before: the sheet showed the first rows (neighbouring video frames); no --n or --seed."""
    brinelite.install(str(make_pairs(tmp_path / "p", count=20)), name="gen/discs@1.0.0")
    first = sheet(cli, "gen/discs", tmp_path, "--n", "3", "--seed", "1")
    again = sheet(cli, "gen/discs", tmp_path, "--n", "3", "--seed", "1")
    other = sheet(cli, "gen/discs", tmp_path, "--n", "3", "--seed", "2")
    assert first.shape == (GAP + CELL + GAP, GAP + 3 * (TILE + GAP), 3)  # one line of three
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    picked = pick_rows(100, 16, seed=0)
    assert picked == sorted(set(picked)) and len(picked) == 16 and picked != list(range(16))
    assert pick_rows(5, 16, seed=0) == [0, 1, 2, 3, 4]


def test_binary_masks_are_outlined_on_a_light_sheet_without_black_cells(cli, tmp_path):
    """Before: a red tint (unreadable on red endoscopy), no gaps, black filler cells."""
    brinelite.install(str(make_pairs(tmp_path / "p", count=6)), name="gen/discs@1.0.0")
    grid = sheet(cli, "gen/discs", tmp_path, "--n", "6").astype(int)
    assert grid.shape == (GAP + 2 * (CELL + GAP), GAP + 4 * (TILE + GAP), 3)
    background = np.array(BACKGROUND)[::-1]  # BGR
    empty = grid[GAP + CELL + GAP :, GAP + 2 * (TILE + GAP) :]  # the two missing cells
    assert (empty == background).all()
    assert (grid[:, GAP + TILE : GAP + TILE + GAP] == background).all()  # a gap between tiles
    first = grid[GAP + TITLE : GAP + CELL, GAP : GAP + TILE]
    cyan = (first[..., 0] > 200) & (first[..., 1] > 200) & (first[..., 2] < 80)
    assert cyan.sum() > 100  # the disc's outline
    title = grid[GAP : GAP + TITLE, GAP : GAP + TILE]
    assert (title < 100).any()  # the row and file name are written above the tile
