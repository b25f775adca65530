import pytest

from brinelite.errors import InvalidNameError
from brinelite.names import DatasetRef, Version, newest, parse_name, parse_version, suggest


@pytest.mark.parametrize(
    "text",
    ["rohan/chairs-with-masks", "demo/membrane", "a1/b.c_d-e", "team/x@1.2.0", "0/0@0.0.0"],
)
def test_valid_names_parse(text):
    ref = parse_name(text)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "a/b/c",
        "../x",
        "a/..",
        "a/b c",
        "Rohan/chairs",
        "a/-b",
        "/b",
        "a/",
        "a/b@1.0",
        "a/b@v1",
    ],
)
def test_invalid_names_are_refused_with_the_rule(text):
    with pytest.raises(InvalidNameError) as raised:
        parse_name(text)
    assert "not valid" in str(raised.value)


def test_versions_sort_semantically():
    versions = [parse_version(v) for v in ("1.10.0", "1.2.0", "1.9.3", "0.9.9")]
    assert newest(versions) == Version(1, 10, 0)
    assert sorted(versions)[0] == Version(0, 9, 9)


def test_pinning_and_suggestions():
    assert parse_name("a/b").with_version("2.0.1") == DatasetRef("a", "b", Version(2, 0, 1))
    assert "demo/membrane" in suggest("demo/membrain", ["demo/membrane", "other/x"])
    assert suggest("zzz/qqq", ["demo/membrane"]) == ""
