"""The preprocessed cache: prepare once per row, augment on copies, keyed and bounded."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

import brinelite
from brinelite import cache as brinelite_cache
from brinelite.errors import DataError
from brinelite.prepared import prepared_root

SIZE = 16


@pytest.fixture
def membrane(membrane_src):
    brinelite.install(str(membrane_src), name="isbi/membrane")
    return brinelite.load_dataset("isbi/membrane")


class Prepare:
    """A deterministic preparation that counts its calls (resize + scale, as segtrain's)."""

    def __init__(self, size=SIZE):
        self.size, self.calls = size, 0
        self.cache_key = f"tests.prepare:size={size}"

    def __call__(self, sample):
        self.calls += 1
        image, mask = sample
        return cv2.resize(image, (self.size, self.size)) / 255, (mask > 100).astype(np.float32)[
            : self.size, : self.size
        ]


def flip(sample):
    """A deterministic 'augmentation' that edits its arrays in place."""
    image, mask = sample
    image[:] = image[:, ::-1].copy()
    image += 1000.0
    return image, mask


def epochs(gen, count=2):
    out = []
    for _ in range(count * gen.steps_per_epoch()):
        out.append(next(gen))
    return out


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_two_stages_give_the_one_stage_batches_and_prepare_runs_once(membrane, cache):
    prepare = Prepare()
    two = membrane.to_keras(
        "image", "mask", batch_size=7, seed=1, prepare=prepare, augment=flip, cache=cache
    )
    one = membrane.to_keras(
        "image", "mask", batch_size=7, seed=1, processing_function=lambda s: flip(Prepare()(s))
    )
    for (x2, y2), (x1, y1) in zip(epochs(two, 3), epochs(one, 3), strict=True):
        np.testing.assert_array_equal(x2, x1)
        np.testing.assert_array_equal(y2, y1)
    assert prepare.calls == 30  # 3 epochs of 30 rows, each row prepared once
    store = two.loader.preparation.store
    # flip edited its copies in place by +1000 each epoch: the cache still holds prepare's output.
    x, _ = store.get(0)
    np.testing.assert_array_equal(
        x,
        Prepare()(
            (
                membrane.load_image(membrane[0].image).astype(np.float32),
                membrane.load_image(membrane[0].mask).astype(np.float32),
            )
        )[0],
    )
    assert x.max() <= 1.0


def test_disk_cache_is_published_once_and_shared(membrane, brinelite_home):
    first = Prepare()
    gen = membrane.to_keras(
        "image", "mask", batch_size=10, prepare=first, cache="disk", shuffle=False
    )
    epochs(gen, 1)
    published = list(prepared_root().iterdir())
    assert len(published) == 1 and {p.name for p in published[0].iterdir()} == {
        "x.npy",
        "y.npy",
        "key.json",
        "arrays.json",
    }
    assert not list((brinelite_home / "tmp").glob("prepared-*"))  # staging renamed into place
    again = Prepare()
    reused = membrane.to_keras(
        "image", "mask", batch_size=10, prepare=again, cache="disk", shuffle=False
    )
    np.testing.assert_array_equal(reused[0][0], gen[0][0])
    assert again.calls == 0 and first.calls == 30
    assert reused.loader.preparation.store.nbytes == 0  # mapped from disk, not held in memory


def test_any_change_of_dataset_fold_size_or_key_is_another_cache(membrane, membrane_src, tmp_path):
    def build(ds, prepare, **kwargs):
        gen = ds.to_keras("image", "mask", batch_size=30, prepare=prepare, cache="disk", **kwargs)
        gen[0]
        return prepare.calls

    assert build(membrane, Prepare()) == 30
    assert build(membrane, Prepare()) == 0  # same everything: read back
    assert build(membrane, Prepare(size=8)) == 30  # other size: its own key
    renamed = Prepare()
    renamed.cache_key = "tests.other-prepare:size=16"
    assert build(membrane, renamed) == 30
    archive = tmp_path / "membrane-1.0.1.tar.gz"
    brinelite.build(membrane_src, "isbi/membrane", "1.0.1", out=archive)
    brinelite.install(str(archive))
    newer = brinelite.load_dataset("isbi/membrane@1.0.1")
    assert newer.manifest.fingerprint != membrane.manifest.fingerprint
    assert build(newer, Prepare()) == 30  # new version: new fingerprint
    fold, _ = membrane.create_folds((12,), seed=0)
    gen = fold.to_keras("image", "mask", batch_size=12, prepare=(p := Prepare()), cache="disk")
    gen[0]
    assert p.calls == 12  # another view of the same dataset
    assert len(list(prepared_root().iterdir())) == 5


def test_memory_stays_within_the_stated_bound(membrane):
    row = membrane[0]
    loaded = [membrane.load_image(path).astype(np.float32) for path in (row.image, row.mask)]
    per_row = sum(np.asarray(part).nbytes for part in Prepare()(loaded))
    assert per_row == 2 * SIZE * SIZE * 4  # float32 grey image and mask
    bound = 30 * per_row
    gen = membrane.to_keras("image", "mask", batch_size=30, prepare=Prepare(), cache_bytes=bound)
    gen[0]
    store = gen.loader.preparation.store
    assert store.location == "memory" and store.nbytes == bound
    small = membrane.to_keras(
        "image", "mask", batch_size=30, prepare=Prepare(), cache_bytes=bound - 1
    )
    small[0]
    store = small.loader.preparation.store
    assert store.nbytes == 0 and store.location == str(store.folder)  # fell back to disk
    strict = membrane.to_keras(
        "image", "mask", prepare=Prepare(), cache="memory", cache_bytes=bound - 1
    )
    with pytest.raises(DataError, match=r"over cache_bytes=.*cache='disk'"):
        strict[0]


def test_prepare_needs_a_key_and_excludes_one_stage_processing(membrane):
    with pytest.raises(DataError, match="no stable identity.*prepare_key"):
        membrane.to_keras("image", "mask", prepare=lambda s: s)
    gen = membrane.to_keras("image", "mask", prepare=lambda s: s, prepare_key="tests.identity:1")
    assert gen[0][0].shape == (30, 512, 512, 1)
    with pytest.raises(DataError, match="not both"):
        membrane.to_keras("image", "mask", processing_function=flip, prepare=Prepare())
    with pytest.raises(DataError, match="need prepare"):
        membrane.to_keras("image", "mask", augment=flip)
    with pytest.raises(DataError, match="cache must be one of"):
        membrane.to_keras("image", "mask", prepare=Prepare(), cache="ram")


def test_prepare_with_varying_shapes_is_a_clear_error(kvasir_src):
    brinelite.install(str(kvasir_src), name="simula/kvasir-seg")
    kvasir = brinelite.load_dataset("simula/kvasir-seg")
    gen = kvasir.to_keras(
        "image",
        "mask",
        batch_size=4,
        shuffle=False,
        prepare=lambda s: s,
        prepare_key="tests.identity:1",
    )
    with pytest.raises(DataError, match=r"prepare gave x of shape .* on row \d+"):
        gen[0]


def noisy(sample, rng):
    """A random augmentation that draws from the generator brinelite hands it."""
    image, mask = sample
    return image + rng.random(), mask


def test_an_augment_taking_rng_gets_one_generator_per_row_and_epoch(membrane):
    def run(seed, workers, shuffle=True):
        gen = membrane.to_keras(
            "image",
            "mask",
            batch_size=4,
            shuffle=shuffle,
            seed=seed,
            workers=workers,
            prepare=Prepare(),
            augment=noisy,
        )
        return [batch[0] for batch in epochs(gen)]

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    two_workers = run(3, workers=2)
    assert same(two_workers, run(3, workers=2))  # thread scheduling changes nothing
    assert same(two_workers, run(3, workers=1))
    assert not same(two_workers, run(4, workers=2))
    in_order = run(3, workers=2, shuffle=False)
    steps = len(in_order) // 2  # the same rows in both epochs, augmented anew in the second
    assert not same(in_order[:steps], in_order[steps:])


def test_cache_clean_removes_only_stale_prepared_caches(membrane_src, cli, brinelite_home):
    def cached(name):
        ds = brinelite.load_dataset(name)
        ds.to_keras("image", "mask", batch_size=30, prepare=Prepare(), cache="disk")[0]
        return {p.name for p in prepared_root().iterdir()}

    for version in ("1.0.0", "1.0.1", "1.0.2"):
        brinelite.install(str(membrane_src), name=f"isbi/membrane@{version}", quiet=True)
    first = cached("isbi/membrane@1.0.0")
    kept = cached("isbi/membrane@1.0.1") - first
    uninstalled = cached("isbi/membrane@1.0.2") - first - kept
    (prepared_root() / ("da" * 32)).mkdir()  # damaged: no key.json
    hostile = prepared_root() / ("de" * 32)  # a key.json nested past Python's recursion limit
    hostile.mkdir()
    (hostile / "key.json").write_text("[" * 100_000)
    fewer = membrane_src.parent / "fewer"
    fewer.mkdir()
    for sub in ("images", "masks"):
        (fewer / sub).mkdir()
        for path in sorted((membrane_src / sub).iterdir())[1:]:
            (fewer / sub / path.name).write_bytes(path.read_bytes())
    brinelite.install(str(fewer), name="isbi/membrane@1.0.0", force=True, quiet=True)
    assert cli("uninstall", "isbi/membrane@1.0.2").code == 0

    cleaned = cli("cache", "clean")
    assert cleaned.code == 0 and "4 stale prepared caches" in cleaned.out, cleaned.err
    assert {p.name for p in prepared_root().iterdir()} == kept
    assert first and uninstalled and not (first | uninstalled) & kept
    reread = Prepare()
    brinelite.load_dataset("isbi/membrane@1.0.1").to_keras(
        "image", "mask", batch_size=30, prepare=reread, cache="disk"
    )[0]
    assert reread.calls == 0  # the kept cache still serves its dataset
    assert "stale" not in cli("cache", "clean").out  # nothing left to remove


def _damage(folder, how, outside):
    """Damage a published cache as a crash, a hand or an attacker could."""
    x = np.load(folder / "x.npy")
    if how == "deleted y.npy":
        (folder / "y.npy").unlink()
    elif how == "x of another shape":
        np.save(folder / "x.npy", x[:, :8])
    elif how == "x of another dtype":
        np.save(folder / "x.npy", x.astype(np.float64))
    elif how == "x linked outside":
        np.save(outside, np.full_like(x, 7))
        (folder / "x.npy").unlink()
        (folder / "x.npy").symlink_to(outside)
    elif how.startswith("arrays.json"):
        dim = 1e400 if "1e400" in how else 2**62  # json.dumps writes 1e400 as Infinity
        (folder / "arrays.json").write_text(
            json.dumps({"arrays": [{"shape": [dim, 16], "dtype": "<f8"}]})
        )
    elif how == "folder linked outside":
        moved = outside.parent / "moved"
        folder.rename(moved)
        np.save(moved / "x.npy", np.full_like(x, 7))
        folder.symlink_to(moved)


@pytest.mark.parametrize(
    "how",
    [
        "deleted y.npy",
        "x of another shape",
        "x of another dtype",
        "x linked outside",
        "folder linked outside",
        "arrays.json with a shape of 1e400",
        "arrays.json with a shape of 2**62",
    ],
)
def test_a_damaged_published_cache_is_prepared_again(membrane, tmp_path, how):
    def read(prepare):
        gen = membrane.to_keras(
            "image", "mask", batch_size=30, shuffle=False, prepare=prepare, cache="disk"
        )
        return gen[0]

    x, y = read(Prepare())
    (folder,) = prepared_root().iterdir()
    outside = tmp_path / "outside.npy"
    _damage(folder, how, outside)
    again = Prepare()
    x2, y2 = read(again)
    assert again.calls == 30  # not served: prepared again
    assert y2.shape == y.shape and not np.isnan(y2).any()
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    third = Prepare()
    np.testing.assert_array_equal(read(third)[0], x)
    assert third.calls == 0  # the cache is whole again
    assert not folder.is_symlink()
    if outside.exists():
        assert (np.load(outside) == 7).all()  # what the link pointed to is left alone


@pytest.mark.parametrize("shape", [[1e400, 16], [2**62, 16], [-16, 16], [0, 16], [8, 8]], ids=str)
def test_a_stale_or_tampered_filling_layout_is_filled_afresh(membrane, shape):
    """Before: 1e400 was an OverflowError traceback; [2**62, 16] or [8, 8] a DataError on every
    later run ("prepare gave x of shape (16, 16) ... but (8, 8) on other rows")."""

    def read(prepare):
        return membrane.to_keras(
            "image", "mask", batch_size=30, shuffle=False, prepare=prepare, cache="disk"
        )[0]

    x, y = read(Prepare())
    (folder,) = prepared_root().iterdir()
    filling = brinelite_cache.home() / "tmp" / f"prepared-{folder.name}"
    filling.mkdir(parents=True)
    stated = {"arrays": [{"shape": shape, "dtype": "<f8"}, {"shape": [16, 16], "dtype": "<f4"}]}
    (filling / "arrays.json").write_text(json.dumps(stated))
    shutil.rmtree(folder)
    again = Prepare()
    x2, y2 = read(again)
    assert again.calls == 30
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert (prepared_root() / folder.name / "x.npy").is_file() and not filling.exists()


def test_a_filling_counts_rows_in_one_file_and_never_writes_through_a_link(membrane, tmp_path):
    """Before: the row counter was renamed over itself for each row, and the file system wrote
    it out every time (a millisecond a row), and a counter replaced by a link was read through
    it and lagged, so the run never published. Now it is written in place, a link planted
    there is replaced (never written or read through) and a damaged counter is recounted."""
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    prepare = Prepare()
    batches = membrane.to_keras(
        "image", "mask", batch_size=7, shuffle=False, prepare=prepare, cache="disk"
    )
    batches[0]
    (filling,) = (brinelite_cache.home() / "tmp").iterdir()
    count = filling / "count"
    count.unlink()
    count.symlink_to(outside)
    batches[1]
    assert outside.read_text() == "keep" and not count.is_symlink()
    inode = count.stat().st_ino
    batches[2]
    assert count.stat().st_ino == inode and int(count.read_text()) == 21
    for k in range(3, len(batches)):
        batches[k]
    assert prepare.calls == 30 and not filling.exists()
    (folder,) = prepared_root().iterdir()
    assert {p.name for p in folder.iterdir()} == {"x.npy", "y.npy", "key.json", "arrays.json"}
