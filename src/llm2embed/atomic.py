"""Write a folder so that readers see the old one or the whole new one, never a half-written one.

>>> from llm2embed.atomic import atomic_dir
>>> with atomic_dir(Path("out/enc")) as tmp:                   # doctest: +SKIP
...     (tmp / "config.json").write_text("{}")                  # out/enc appears (or is replaced) here
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_dir"]


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yield a temporary sibling of ``target``; on success it replaces ``target``, on any error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
