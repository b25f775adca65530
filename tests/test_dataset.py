"""Dataset views: declared splits (Dataset.split, load_dataset(split=)) and fold sizes."""

import io
import json
import tarfile

import pytest
from conftest import camvid_subset, make_pairs, one_line_error
from reliability_helpers import snapshot

import brinelite
from brinelite.errors import DataError, ManifestError, UnknownSplitError


@pytest.fixture
def camvid(tmp_path):
    """Four CamVid train frames and two val frames, built and installed with their splits."""
    src = camvid_subset(tmp_path / "camvid", train=4, val=2)
    result = brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "camvid.tar.gz")
    brinelite.install(str(result.archive), quiet=True)
    return brinelite.load_dataset("lab/camvid")


def stems(dataset) -> list[str]:
    return [row.image.split("/")[-1][:-4] for row in dataset]


def test_split_views_hold_the_rows_the_split_files_name(camvid, tmp_path):
    """Before: there was no Dataset.split and load_dataset took no split."""
    src = tmp_path / "camvid"
    validation = camvid.split("val")
    assert stems(validation) == (src / "split-val.txt").read_text().split()
    assert stems(camvid.split("train")) == (src / "split-train.txt").read_text().split()
    loaded = brinelite.load_dataset("lab/camvid", split="val")
    assert loaded.indices.tolist() == validation.indices.tolist()
    by_path = brinelite.load_dataset(str(camvid.path), split="train")
    assert len(by_path) == 4
    fold = camvid[3:]  # a view: the split's rows within it, in its order
    assert fold.split("val").indices.tolist() == validation.indices.tolist()
    assert len(camvid[:2].split("val")) == 0


def test_an_unknown_split_is_a_one_line_typed_error_listing_the_known(camvid, pairs_src):
    with pytest.raises(UnknownSplitError, match=r"no split 'test'; its splits: train, val\.$"):
        camvid.split("test")
    with pytest.raises(DataError, match="no split 'x'"):
        brinelite.load_dataset("lab/camvid", split="x")
    brinelite.install(str(pairs_src), name="gen/discs@1.0.0", quiet=True)
    with pytest.raises(UnknownSplitError, match="its splits: none .use create_folds"):
        brinelite.load_dataset("gen/discs").split("val")


@pytest.mark.parametrize(
    ("splits", "words"),
    [
        ({"val": [4, 4]}, "distinct row numbers from 0 to 5"),
        ({"val": [6]}, "distinct row numbers from 0 to 5"),
        ({"val": [-1]}, "distinct row numbers"),
        ({"val": [10**20]}, "distinct row numbers"),
        ({"val": [-(10**20), 1]}, "distinct row numbers"),
        ({"val": [1.0]}, "list of row numbers"),
        ({"val": [True]}, "list of row numbers"),
        ({"val": []}, "distinct row numbers"),
        ({"train": [0, 1], "val": [1]}, "a row belongs to two splits"),
        ({"../x": [0]}, "split names are"),
        ({"val": "0-3"}, "list of row numbers"),
        ({"rows": float("inf")}, "OverflowError"),  # JSON's Infinity: int() overflows
    ],
)
def test_a_tampered_manifest_split_is_refused_at_open_and_verify(camvid, cli, splits, words):
    """The manifest is not hashed, so its splits are checked whenever it is read."""
    path = camvid.path / "manifest.json"
    tampered = splits if "rows" in splits else {"splits": splits}
    path.write_text(json.dumps(json.loads(path.read_text()) | tampered))
    with pytest.raises(ManifestError, match=words.replace("(", r"\(")):
        brinelite.load_dataset("lab/camvid")
    result = cli("verify", "lab/camvid")
    assert result.code == 1 and words in result.err and len(result.err.splitlines()) == 1


@pytest.mark.parametrize("number", [10**20, -(10**20)])
def test_an_archive_whose_split_rows_overflow_installs_nothing(
    tmp_path, cli, brinelite_home, number
):
    """Before: numpy's OverflowError, a 57-line traceback from ``brinelite install``."""
    src = camvid_subset(tmp_path / "camvid", train=2, val=1)
    archive = brinelite.build(src, "lab/camvid", "1.0.0", tmp_path / "camvid.tar.gz").archive
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(evil, "w:gz") as tar:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else b""
            if member.name.endswith("manifest.json"):
                data = json.dumps(json.loads(data) | {"splits": {"val": [number]}}).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    one_line_error(cli("install", evil), "split 'val' must list distinct row numbers")
    assert snapshot(brinelite_home) == {}


def test_a_format_3_dataset_without_splits_still_loads(camvid):
    """What older brinelites wrote (format 3, no "splits") opens with no splits."""
    path = camvid.path / "manifest.json"
    old = {k: v for k, v in json.loads(path.read_text()).items() if k != "splits"}
    path.write_text(json.dumps(old | {"format_version": 3}))
    reopened = brinelite.load_dataset("lab/camvid")
    assert reopened.manifest.splits == {} and len(reopened) == 6
    assert reopened.manifest.format_version == 3


def test_fraction_fold_sizes_round_up_as_train_test_split(tmp_path):
    """Before: (0.2,) of 97 rows gave 19 / 78; train_test_split's test_size=0.2 gives 20."""
    brinelite.install(str(make_pairs(tmp_path / "p", count=97, size=(8, 8))), name="g/n@1.0.0")
    dataset = brinelite.load_dataset("g/n")
    validation, train = dataset.create_folds((0.2,), seed=0)
    assert (len(validation), len(train)) == (20, 77)  # ceil(19.4), as sklearn
    a, b, rest = dataset.create_folds((0.1, 0.5), shuffle=False)
    assert (len(a), len(b), len(rest)) == (10, 49, 38)  # ceil(9.7), ceil(48.5)
