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


def test_prereleases_parse_and_sort_in_semver_order():
    """SemVer 11's own example order; ``1.0.0-rc1`` was refused as "not semantic" before."""
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0-rc1",
        "1.0.0",
        "1.0.1-rc1",
    ]
    versions = [parse_version(v) for v in order]
    assert [str(v) for v in versions] == order
    assert sorted(reversed(versions)) == versions
    assert parse_version("1.0.0-rc1") < parse_version("1.0.0")
    assert newest(versions[:-1]) == Version(1, 0, 0)
    assert str(parse_name("a/b@2.0.0-rc.2")) == "a/b@2.0.0-rc.2"


@pytest.mark.parametrize("text", ["1.0.0-", "1.0.0-01", "1.0.0-RC1", "1.0.0+build.5", "1.0.0-a..b"])
def test_bad_prereleases_are_refused(text):
    with pytest.raises(InvalidNameError, match="not valid"):
        parse_version(text)
