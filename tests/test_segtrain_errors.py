"""segtrain.errors: the exceptions, and how a one-line message quotes another library's."""

from segtrain.errors import first_line


def test_first_line_quotes_one_short_line_or_the_class_name():
    assert first_line(OSError("  disk full\nTraceback (most recent call last):\n")) == "disk full"
    assert first_line(ValueError("x" * 500)) == "x" * 200
    assert first_line(ValueError("x" * 50), limit=10) == "x" * 10
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError(" \n ")) == "RuntimeError"
