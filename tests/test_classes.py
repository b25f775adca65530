"""Class maps: parsing users' classes.json, id lookups, colour masks, hostile files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from brinelite.classes import ClassMap, pixel_shares, read_classes_file
from brinelite.errors import BuildError, ManifestError

CAMVID = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
          "pedestrian", "bicyclist"]  # fmt: skip


def camvid_map() -> ClassMap:
    return ClassMap.from_json(
        {"classes": [{"id": k, "name": n} for k, n in enumerate(CAMVID)], "ignore": 11}
    )


def test_non_contiguous_ids_map_onto_training_indices_with_void_last():
    classes = ClassMap.from_json(
        {"classes": [{"id": 0, "name": "road"}, {"id": 7, "name": "car"}], "ignore": 255}
    )
    mask = np.array([[0, 7], [255, 3]], dtype=np.uint8)
    assert classes.to_indices(mask).tolist() == [[0, 1], [2, 2]]
    assert classes.void_index == 2
    assert classes.undeclared(mask) == [3]


def test_round_trip_keeps_everything():
    data = {
        "classes": [{"id": 0, "name": "sky", "color": [128, 128, 128]}, {"id": 4, "name": "car"}],
        "ignore": 11,
        "shares": {"sky": 0.25, "car": 0.5, "ignore": 0.25},
    }
    assert ClassMap.from_json(data).to_json() == data


def test_colour_masks_convert_to_ids_and_report_unknown_colours():
    classes = ClassMap.from_json(
        {
            "classes": [
                {"id": 1, "name": "a", "color": [255, 0, 0]},
                {"id": 2, "name": "b", "color": [0, 0, 255]},
            ],
            "ignore": 0,
        }  # fmt: skip
    )
    rgb = np.array([[[255, 0, 0], [0, 0, 255], [9, 9, 9]]], dtype=np.uint8)
    ids, unknown = classes.colors_to_ids(rgb)
    assert ids.tolist() == [[1, 2, 0]]
    assert unknown == [(9, 9, 9)]


def test_palette_uses_declared_colours_and_fills_the_rest():
    classes = ClassMap.from_json(
        {"classes": [{"id": 0, "name": "a", "color": [1, 2, 3]}, {"id": 1, "name": "b"}]}
    )
    palette = classes.palette()
    assert palette.shape == (2, 3) and palette[0].tolist() == [1, 2, 3]
    assert palette[1].tolist() != [1, 2, 3]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([], "object"),
        ({"classes": []}, "1 to 255"),
        ({"classes": [{"id": k, "name": f"c{k}"} for k in range(256)]}, "1 to 255"),
        ({"classes": [{"id": 0, "name": "\x1b[31mred"}]}, "control"),
        ({"classes": [{"id": 0, "name": "a\x00b"}]}, "control"),
        ({"classes": [{"id": 0, "name": "\u202eevil"}]}, "control"),
        ({"classes": [{"id": 0, "name": "a"}, {"id": 0, "name": "b"}]}, "share a id"),
        ({"classes": [{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]}, "share a name"),
        ({"classes": [{"id": 300, "name": "a"}]}, "0 to 255"),
        ({"classes": [{"id": True, "name": "a"}]}, "0 to 255"),
        ({"classes": [{"id": 0, "name": ""}]}, "name"),
        ({"classes": [{"id": 0, "name": "a,b"}]}, "comma"),
        ({"classes": [{"id": 0, "name": "a", "color": [1, 2]}]}, "[R, G, B]"),
        ({"classes": [{"id": 0, "name": "a"}], "ignore": 0}, "also a class id"),
        ({"classes": [{"id": 0, "name": "a"}], "extra": 1}, "unknown keys"),
        ({"classes": [{"id": 0, "name": "a", "weight": 2}]}, "optional"),
    ],
)
def test_malformed_class_maps_are_refused_saying_why(data, words):
    with pytest.raises(ManifestError, match="not a valid class map") as caught:
        ClassMap.from_json(data)
    assert words in str(caught.value)


def test_classes_file_errors_are_build_errors(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text("{not json")
    with pytest.raises(BuildError, match="not valid JSON"):
        read_classes_file(path)
    path.write_text("[" * 100_000 + "]" * 100_000)  # under 1 MiB, too deep for Python's parser
    with pytest.raises(BuildError, match="not valid JSON: it nests"):
        read_classes_file(path)
    path.write_bytes(b" " * (2 << 20))
    with pytest.raises(BuildError, match="larger than 1 MiB"):
        read_classes_file(path)
    path.write_text(json.dumps({"classes": [{"id": 0, "name": "x"}]}))
    assert read_classes_file(path).names == ["x"]


def test_the_most_classes_leave_void_an_8bit_training_index():
    classes = ClassMap.from_json({"classes": [{"id": k, "name": f"c{k}"} for k in range(255)]})
    mask = np.array([[0, 254, 255]], dtype=np.uint8)
    assert classes.to_indices(mask).tolist() == [[0, 254, 255]]  # 255: undeclared -> void


def test_pixel_shares_from_a_histogram():
    classes = camvid_map()
    counts = np.zeros(256)
    counts[[0, 3, 11]] = [1, 2, 1]
    shares = pixel_shares(classes, counts)
    assert shares["sky"] == 0.25 and shares["road"] == 0.5 and shares["ignore"] == 0.25
    assert shares["car"] == 0.0
