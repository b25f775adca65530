"""brinelite build: the splits a source declares, and label maps without a class map."""

import csv
import json

import cv2
import numpy as np
import pytest
from conftest import camvid_subset, make_pairs

import brinelite
from brinelite import splits
from brinelite.errors import BuildError, LabelMapError


def one_line(result, *words: str) -> None:
    """A failed command printed exactly one line, 'Error: ...', holding every word."""
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    for word in words:
        assert word in lines[0], lines[0]


def build_and_install(cli, src, tmp_path, name="lab/camvid", *extra):
    archive = tmp_path / f"{name.replace('/', '-')}.tar.gz"
    built = cli("build", src, "--name", name, "--out", archive, "-q", *extra)
    assert built.code == 0, built.err
    assert cli("install", archive, "-q").code == 0
    return built


def test_split_files_are_recorded_and_shown(cli, tmp_path):
    """Before: split-train.txt / split-val.txt were ignored; the manifest knew no splits."""
    src = camvid_subset(tmp_path / "camvid", train=4, val=2)
    built = build_and_install(cli, src, tmp_path)
    assert "split train 4, split val 2" in built.out
    dataset = brinelite.load_dataset("lab/camvid")
    val_stems = (src / "split-val.txt").read_text().split()
    val_rows = tuple(k for k, row in enumerate(dataset) if row.image[7:-4] in val_stems)
    assert dataset.manifest.splits == {
        "train": tuple(k for k in range(6) if k not in val_rows),
        "val": val_rows,
    }
    assert dataset.manifest.format_version == 4
    assert "split" not in [c.name for c in dataset.manifest.columns]  # not a column
    info = cli("info", "lab/camvid")
    assert info.code == 0 and "splits:             train 4 rows, val 2 rows" in info.out
    as_json = json.loads(cli("info", "lab/camvid", "--json").out)
    assert as_json["splits"] == {"train": 4, "val": 2}
    assert cli("verify", "lab/camvid").code == 0


def test_a_dataset_without_splits_is_written_as_before(cli, pairs_src, tmp_path):
    """No split files: format 3, no "splits" key, so brinelites reading format 3 read it."""
    build_and_install(cli, pairs_src, tmp_path, "gen/discs")
    dataset = brinelite.load_dataset("gen/discs")
    raw = json.loads((dataset.path / "manifest.json").read_text())
    assert raw["format_version"] == 3 and "splits" not in raw
    assert dataset.manifest.splits == {}
    assert json.loads(cli("info", "gen/discs", "--json").out)["splits"] == {}


def test_the_fingerprint_covers_the_splits(tmp_path):
    src = camvid_subset(tmp_path / "camvid")
    first = brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "a.tar.gz")
    stems = (src / "split-train.txt").read_text().split()
    (src / "split-train.txt").write_text("\n".join(stems[:3]) + "\n")  # one row leaves train
    second = brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "b.tar.gz")
    assert len(second.manifest.splits["train"]) == 3
    assert first.manifest.fingerprint != second.manifest.fingerprint


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        (["no_such_frame"], ("split-val.txt lists 1 stem(s) that are not rows", "'no_such_frame'")),
        (["images/{val0}"], ("not rows", "'images/{val0}'")),  # a path part
        (["../../{val0}"], ("not rows", "'../../{val0}'")),
        (["{val0}.png"], ("not rows", "'{val0}.png'")),
        (["{train0}"], ("1 row(s) are in two splits (train and val)", "'{train0}'")),
        (["{val0}", "{val0}"], ("split-val.txt lists 1 stem(s) twice", "'{val0}'")),
        ([], ("split-val.txt lists no stems",)),
        ([f"x{k}" for k in range(40)], ("40 stem(s) that are not rows", "'x4' and 35 more")),
    ],
)
def test_bad_split_files_are_refused_in_one_line(cli, tmp_path, lines, words):
    """Before: split files were never read, so nothing was refused."""
    src = camvid_subset(tmp_path / "camvid")
    stems = {
        "train0": (src / "split-train.txt").read_text().split()[0],
        "val0": (src / "split-val.txt").read_text().split()[0],
    }
    (src / "split-val.txt").write_text("\n".join(line.format(**stems) for line in lines))
    out = tmp_path / "x.tar.gz"
    result = cli("build", src, "--name", "lab/camvid", "--out", out, "-q")
    one_line(result, *(word.format(**stems) for word in words))
    assert not out.exists()


def test_hostile_split_files(cli, tmp_path, monkeypatch):
    src = camvid_subset(tmp_path / "camvid")
    (src / "split-Bad Name.txt").write_text("x\n")
    one_line(cli("build", src, "--name", "lab/c", "--out", tmp_path / "x.tgz"), "split names are")
    (src / "split-Bad Name.txt").unlink()
    (src / "split-test.txt").write_bytes(b"\xff\xfe\x00")
    one_line(cli("build", src, "--name", "lab/c", "--out", tmp_path / "x.tgz"), "not UTF-8")
    (src / "split-test.txt").write_text("x\x1b[31m" * 100 + "\n")  # a long line, escapes
    result = cli("build", src, "--name", "lab/c", "--out", tmp_path / "x.tgz")
    one_line(result, "not rows", "\\x1b")
    assert "\x1b" not in result.err and len(result.err) < 600
    monkeypatch.setattr(splits, "MAX_FILE_BYTES", 100)  # 64 MiB in earnest
    (src / "split-test.txt").write_text("x" * 101)
    one_line(cli("build", src, "--name", "lab/c", "--out", tmp_path / "x.tgz"), "larger than")


def test_a_csv_split_column(tmp_path):
    """A CSV source's split column declares the splits; an empty cell is in none."""
    src = make_pairs(tmp_path / "pairs", count=4)
    with open(src / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "split"])
        for k, split in enumerate(["train", "val", "", "train"]):
            writer.writerow([f"images/{k:03d}.png", f"masks/{k:03d}.png", split])
    config = {"path": "data.csv", "columns": [{"name": "image", "type": "image"},
                                              {"name": "mask", "type": "image"}]}  # fmt: skip
    (src / "config.json").write_text(json.dumps(config))
    built = brinelite.build(src / "config.json", "gen/csv", "1.0.0", tmp_path / "c.tar.gz")
    assert built.manifest.splits == {"train": (0, 3), "val": (1,)}
    with open(src / "data.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["images/000.png", "masks/000.png", "../val"])
    with pytest.raises(BuildError, match="Row 5 of data.csv names split '../val'"):
        brinelite.build(src / "config.json", "gen/csv", "1.0.0", tmp_path / "d.tar.gz")


def test_label_maps_without_a_class_map_are_refused_with_a_skeleton(cli, tmp_path):
    """Before: CamVid without classes.json built a binary dataset (exit 0) of empty masks."""
    src = camvid_subset(tmp_path / "camvid", classes=False)
    out = tmp_path / "camvid.tar.gz"
    result = cli("build", src, "--name", "lab/camvid", "--out", out, "-q")
    one_line(result, "hold only the values 0, 1, 2", str(src / "classes.json"), "--binary")
    assert not out.exists()
    skeleton = json.loads(result.err[result.err.index("{") : result.err.rindex("}") + 1])
    assert skeleton["classes"][:2] == [{"id": 0, "name": "class_0"}, {"id": 1, "name": "class_1"}]
    (src / "classes.json").write_text(json.dumps(skeleton))  # the skeleton builds as it is
    assert cli("build", src, "--name", "lab/camvid", "--out", out, "-q").code == 0
    (src / "classes.json").unlink()
    insisted = cli("build", src, "--name", "lab/camvid", "--out", out, "-q", "--force", "--binary")
    assert insisted.code == 0, insisted.err
    with pytest.raises(LabelMapError) as raised:
        brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "api.tar.gz")
    assert raised.value.values == sorted(raised.value.values) and 0 in raised.value.values


def test_binary_masks_of_zero_and_one_are_label_maps_too(tmp_path):
    """0/1 masks read as binary (under 100 is background) would train empty masks."""
    src = make_pairs(tmp_path / "pairs", count=3)
    for mask in (src / "masks").iterdir():
        cv2.imwrite(str(mask), (cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE) > 0).astype(np.uint8))
    with pytest.raises(LabelMapError, match="hold only the values 0, 1 "):
        brinelite.build(src, "gen/discs", "1.0.0", tmp_path / "x.tar.gz")


def test_show_on_a_raw_folder_of_label_maps_says_the_same(cli, tmp_path):
    """Before: show drew CamVid's masks as binary: no mask at all on the sheet."""
    src = camvid_subset(tmp_path / "camvid", classes=False)
    sheet = tmp_path / "sheet.png"
    result = cli("show", src, "--out", sheet)
    one_line(result, "hold only the values 0, 1", str(src / "classes.json"), "--binary")
    assert not sheet.exists()
    assert cli("show", src, "--out", sheet, "--binary").code == 0 and sheet.exists()
