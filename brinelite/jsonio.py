"""JSON from outside (registries, archives, users' files) parsed the one way.

Python's parser recurses once per nested array or object, so a hostile ``[[[[...`` of a few
hundred kilobytes raises ``RecursionError``, which is no ``ValueError``: every caller's "not
valid JSON" handling would miss it and the user would get a traceback. ``loads`` reports it
as the ``ValueError`` any other malformed JSON raises.

    data = jsonio.loads(body)  # ValueError for bad JSON, however it is bad
"""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``, raising ``ValueError`` for JSON nested too deeply.

    Args:
        text: the JSON document.
        **options: passed to ``json.loads`` (e.g. ``object_pairs_hook``).

    Returns:
        The decoded value.

    Raises:
        ValueError: the text is not valid JSON, or nests arrays or objects too deeply to parse.

    Example::

        loads('{"classes": []}') == {"classes": []}
    """
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("it nests arrays or objects too deeply to be parsed") from None
