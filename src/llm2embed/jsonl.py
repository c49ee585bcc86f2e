"""JSON Lines input shared by training data, NLI triplets and RAG documents: blank lines skipped, errors name
the file and the line.

>>> list(jsonl_rows('{"a": 1}\\n\\n{"a": 2}', "x.jsonl"))
[(1, {'a': 1}), (3, {'a': 2})]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["jsonl_rows"]


def jsonl_rows(content: str, path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed row)`` for every non-blank line of ``content`` (the text of ``path``)."""
    for lineno, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{os.fspath(path)}:{lineno} is not valid JSON: {exc}") from None
