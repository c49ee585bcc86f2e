"""Give a saved encoder another pooling without retraining: same weights, new ``Pooling`` module.

Pooling has no weights, so an encoder trained with one pooling can be handed out with another (the pipeline's
``encoder_pooling_mode``: PromptEOL + SimCSE trains the last token and hands out ``last_token+mean``). The
new folder sits beside the source (same stage record, so :func:`llm2embed.dual.adapter_chain` still finds the
adapters it was trained on); its large files are hard links to the source's where the file system allows.

>>> from llm2embed.repool import repool
>>> repool("runs/default/simcse/encoder", "last_token+mean")                 # doctest: +SKIP
PosixPath('runs/default/simcse/encoder_last_token+mean')
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .atomic import atomic_dir
from .encoder import METADATA_FILE
from .pooling import build_pooling, pooling_parts

__all__ = ["pooled_folder", "repool"]

_LINK_ABOVE = 1 << 20  # files this large are linked, smaller ones (configs that get rewritten) copied


def pooled_folder(folder: str | os.PathLike, mode: str) -> Path:
    """Where :func:`repool` writes ``folder`` with pooling ``mode`` (a sibling named after the mode)."""
    folder = Path(folder)
    return folder.with_name(f"{folder.name}_{mode}")


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.getsize(src) >= _LINK_ABOVE:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copy2(src, dst)


def _pooling_module_dir(folder: Path) -> Path:
    modules = json.loads((folder / "modules.json").read_text())
    for module in modules:
        if module.get("type", "").endswith(".Pooling"):
            return folder / module["path"]
    raise ValueError(f"{folder / 'modules.json'} lists no Pooling module to replace")


def repool(folder: str | os.PathLike, mode: str, target: str | os.PathLike | None = None) -> Path:
    """Write the saved encoder ``folder`` with pooling ``mode`` to ``target`` (default :func:`pooled_folder`).

    The target is written to a temporary sibling and renamed into place; an existing target with the same
    pooling is kept as it is, and ``folder`` itself is returned when it already pools that way. Errors name
    the problem: a folder that is not a saved llm2embed encoder, or an unknown pooling mode.
    """
    pooling_parts(mode)  # a clear error for an unknown mode before anything is written
    folder = Path(folder)
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file() or not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved llm2embed encoder (no {METADATA_FILE} / modules.json)")
    metadata = json.loads(metadata_path.read_text())
    if target is None and metadata.get("pooling_mode") == mode:
        return folder  # already pools this way
    target = Path(target) if target is not None else pooled_folder(folder, mode)
    done = target / METADATA_FILE
    if done.is_file() and json.loads(done.read_text()).get("pooling_mode") == mode:
        return target
    pooling_dir = _pooling_module_dir(folder)
    old = json.loads((pooling_dir / "config.json").read_text())
    with atomic_dir(target) as tmp:
        shutil.copytree(folder, tmp, copy_function=_link_or_copy, dirs_exist_ok=True)
        new_dir = tmp / pooling_dir.relative_to(folder)
        shutil.rmtree(new_dir)
        new_dir.mkdir()
        build_pooling(int(old["embedding_dimension"]), mode,
                      skip_instruction=not old.get("include_prompt", True)).save(str(new_dir))
        trained = metadata.get("trained_pooling_mode", metadata.get("pooling_mode"))
        record = {**metadata, "pooling_mode": mode, "trained_pooling_mode": trained}
        (tmp / METADATA_FILE).unlink()  # may be a link to the source's: write a new file, never through it
        (tmp / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return target
