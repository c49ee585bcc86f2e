"""An encoder that remembers its embeddings: in memory for the run, and on disk per model and task.

The runner wraps each model in a :class:`CachedEncoder`. A text is keyed by ``sha1(instruction + NUL + text)``,
so a text embedded by one task (e.g. a Wikipedia document for retrieval) is reused by the next (topic
classification). With a folder, each task's embeddings are written to ``<folder>/<task>.npz`` and read back on
the next run; the model itself is only loaded when some text is missing, so adding a baseline to a report
recomputes nothing for the models already in it.

>>> load = lambda: Encoder.from_pretrained("smollm2-135m")
>>> cached = CachedEncoder(load, "out/report/embeddings/smollm2")
>>> with cached.task("stsb"):                                               # doctest: +SKIP
...     emb = cached.encode(["a sentence", ["Retrieve passages:", "a query"]])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CachedEncoder", "text_key"]


def text_key(instruction: str, text: str) -> str:
    """The cache key of one encoder input.

    >>> text_key("", "hello")
    '1f0d8a5589a21b7323fd154e100d091561103fa6'
    """
    return hashlib.sha1(f"{instruction}\0{text}".encode()).hexdigest()


def _split(item) -> tuple[str, str]:
    if isinstance(item, str):
        return "", item
    instruction, text = item
    return instruction, text


def _task_file(folder: Path, task: str) -> Path:
    return folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", task).strip("_.") + ".npz")


class CachedEncoder:
    """Embeds like the wrapped encoder, computing each distinct (instruction, text) at most once.

    Args:
        load: returns the encoder (called once, on the first text that is not cached).
        folder: where per-task ``.npz`` files live (``None``: memory only).
        settings: written to ``<folder>/model.json`` once the model is loaded (what produced the vectors).
    """

    def __init__(self, load: Callable[[], object], folder: str | os.PathLike | None = None,
                 settings: Callable[[object], dict] | None = None):
        self._load = load
        self._settings_fn = settings
        self._model = None
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, np.ndarray] = {}
        self._task: str | None = None
        self._task_keys: list[str] = []
        self._task_loaded: set[str] = set()
        self.computed = 0  # inputs embedded by the model (not found in any cache)

    # ---------------------------------------------------------------- model
    @property
    def model(self):
        """The wrapped encoder, loaded on first use."""
        if self._model is None:
            self._model = self._load()
            if self.folder is not None and self._settings_fn is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                (self.folder / "model.json").write_text(json.dumps(self._settings_fn(self._model), indent=2,
                                                                   sort_keys=True, default=str) + "\n")
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def saved_settings(self) -> dict | None:
        """The settings written by an earlier run (when this run found everything in the cache)."""
        if self.folder is not None and (self.folder / "model.json").is_file():
            return json.loads((self.folder / "model.json").read_text())
        return None

    # ---------------------------------------------------------------- tasks
    @contextlib.contextmanager
    def task(self, name: str):
        """Attribute the embeddings requested inside the block to task ``name`` (its cache file)."""
        self._task, self._task_keys = name, []
        self._read_task(name)
        try:
            yield self
        finally:
            self._write_task(name, self._task_keys)
            self._task, self._task_keys = None, []

    def _read_task(self, name: str) -> None:
        if self.folder is None or name in self._task_loaded:
            return
        self._task_loaded.add(name)
        path = _task_file(self.folder, name)
        if not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as data:
                for key, row in zip(data["keys"].tolist(), data["embeddings"]):
                    self._memory.setdefault(key, row)
        except (OSError, ValueError, KeyError):  # a damaged cache file is ignored and rewritten
            pass

    def _write_task(self, name: str, keys: list[str]) -> None:
        if self.folder is None or not keys:
            return
        keys = list(dict.fromkeys(keys))
        path = _task_file(self.folder, name)
        if path.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError), np.load(path, allow_pickle=False) as data:
                if set(data["keys"].tolist()) >= set(keys):
                    return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.asarray(keys), embeddings=np.stack([self._memory[k] for k in keys]))
        os.replace(tmp, path)

    # ---------------------------------------------------------------- encoding
    def encode(self, sentences: Sequence, batch_size: int = 32, show_progress_bar: bool | None = None,
               convert_to_numpy: bool = True, **kwargs) -> np.ndarray:
        """Embed strings and ``[instruction, text]`` pairs; only inputs never seen before reach the model."""
        items = [_split(item) for item in sentences]
        keys = [text_key(i, t) for i, t in items]
        missing = {k: item for k, item in zip(keys, sentences) if k not in self._memory}
        if missing:
            emb = self.model.encode(list(missing.values()), batch_size=batch_size,
                                    show_progress_bar=show_progress_bar, convert_to_numpy=True)
            emb = np.asarray(emb, dtype=np.float32)
            for key, row in zip(missing, emb):
                self._memory[key] = row
            self.computed += len(missing)
        if self._task is not None:
            self._task_keys.extend(keys)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys])
