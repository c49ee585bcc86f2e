"""Task names accepted by ``llm2embed eval --tasks`` and the per-task query instructions.

==============================  =====================================================================  ============
``--tasks`` item                what                                                                   table score
==============================  =====================================================================  ============
``stsb``                        STS Benchmark test split (local copy, else the Hub; see public_data)   Spearman
``stsb-dev``                    STS Benchmark dev split (for choosing settings and checkpoints)        Spearman
``wiki``                        the three tasks below (see :mod:`llm2embed.evaluation.wiki`)
``wiki-retrieval``              description -> article retrieval on the held-out Wikipedia articles    nDCG@10
``wiki-classification``         topic classification (11 topics, logistic regression)                  accuracy
``wiki-clustering``             topic clustering (k-means, k = 11)                                     V-measure
``wiki-dev``                    the same three tasks on train-split articles (``wiki-dev-retrieval``,
                                ``wiki-dev-classification``, ``wiki-dev-clustering``): for choosing
                                settings; they take the instructions of their ``wiki-*`` twins
``sts:FILE``                    STS-B ``.csv`` or JSONL/TSV with sentence1, sentence2, score           Spearman
``retrieval:DIR``               BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)              nDCG@10
``classification:DIR``          folder with train.* and test.* (text, label)                           accuracy
``clustering:FILE``             JSONL/TSV/CSV with text, label                                         V-measure
``pair-classification:FILE``    JSONL/TSV/CSV with sentence1, sentence2, label (0/1)                   AP
==============================  =====================================================================  ============

A file task is named ``KIND:STEM`` in the report (``sts:my-pairs``).

**Instructions** (LLM2Vec style: the instruction is attended to but not pooled). Retrieval tasks give theirs to
the queries only, never to the documents; symmetric tasks (STS, classification, clustering, pair
classification) give it to every text. Built-in defaults exist for retrieval only, so ``stsb`` reproduces the
published no-instruction figures. A JSON file maps a task name (or a kind such as ``"retrieval"``) to an
instruction; ``""`` switches one off::

    {"wiki-retrieval": "Given a short description, retrieve the Wikipedia article it describes",
     "stsb": "Retrieve semantically similar text", "wiki-classification": "Classify the topic of the article"}

>>> [t.name for t in parse_tasks("stsb,wiki")]                              # doctest: +SKIP
['stsb', 'wiki-retrieval', 'wiki-classification', 'wiki-clustering']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .wiki import WIKI_TASK_GROUP

__all__ = ["DEFAULT_INSTRUCTIONS", "METRIC_LABELS", "Task", "load_instructions", "parse_tasks",
           "task_instruction"]

DEFAULT_INSTRUCTIONS: dict[str, str] = {
    "wiki-retrieval": "Given a description, retrieve the Wikipedia article",
    "retrieval": "Given a query, retrieve relevant passages",
}

METRIC_LABELS = {"spearman": "Spearman", "ndcg@10": "nDCG@10", "accuracy": "accuracy", "v_measure": "V-measure",
                 "ap": "AP"}
MAIN_METRIC = {"sts": "spearman", "retrieval": "ndcg@10", "classification": "accuracy", "clustering": "v_measure",
               "pair-classification": "ap"}
WIKI_KINDS = ("retrieval", "classification", "clustering")
# group -> its task names: "wiki" -> wiki-retrieval, ...; "wiki-dev" -> wiki-dev-retrieval, ...
WIKI_GROUPS = {group: tuple(f"{group}-{kind}" for kind in WIKI_KINDS) for group in WIKI_TASK_GROUP.values()}
WIKI_TASK_NAMES = frozenset(name for names in WIKI_GROUPS.values() for name in names)
WIKI_SPLIT_OF_GROUP = {group: split for split, group in WIKI_TASK_GROUP.items()}  # -> split of build_wiki_benchmark
ACCEPTED = ", ".join(["stsb", "stsb-dev"] + [n for group, names in WIKI_GROUPS.items() for n in (group, *names)]
                     + ["sts:FILE", "retrieval:DIR", "classification:DIR", "clustering:FILE",
                        "pair-classification:FILE"])


@dataclass
class Task:
    """One evaluation task: loads its data lazily and scores an encoder on it.

    ``symmetric`` tasks give the instruction to every text; the others (retrieval) to queries only.
    """

    name: str
    kind: str
    loader: Callable[[], Any]
    info: dict = field(default_factory=dict)
    source: Callable[[], str] | None = None  # where the data came from, known once loaded (local path or hub:ID)
    _data: Any = field(default=None, repr=False)

    @property
    def main_metric(self) -> str:
        return MAIN_METRIC[self.kind]

    @property
    def symmetric(self) -> bool:
        return self.kind != "retrieval"

    @property
    def data(self):
        if self._data is None:
            self._data = self.loader()
        return self._data

    def sizes(self) -> dict[str, int]:
        data = self.data
        if self.kind == "retrieval":
            return data.sizes()
        if self.kind == "classification":
            train, test = data
            return {"train": len(train), "test": len(test), "labels": len(set(test.labels))}
        if self.kind == "clustering":
            return {"texts": len(data), "clusters": len(set(data.labels))}
        return {"pairs": len(data)}

    def evaluate(self, encoder, instruction: str | None = None, batch_size: int = 32,
                 show_progress_bar: bool | None = None) -> dict[str, float]:
        """Score ``encoder`` (anything with ``encode``) on this task; metrics are x 100."""
        from .classification import evaluate_classification
        from .clustering import evaluate_clustering
        from .pair_classification import evaluate_pair_classification
        from .retrieval import evaluate_retrieval
        from .sts import evaluate_sts

        kw = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
        if self.kind == "sts":
            return evaluate_sts(encoder, self.data, instruction, **kw)
        if self.kind == "retrieval":
            return evaluate_retrieval(encoder, self.data, instruction, **kw)
        if self.kind == "classification":
            train, test = self.data
            return evaluate_classification(encoder, train, test, instruction, **kw)
        if self.kind == "clustering":
            return evaluate_clustering(encoder, self.data, instruction, **kw)
        return evaluate_pair_classification(encoder, self.data, instruction, **kw)


def _stsb_task(split: str = "test") -> Task:
    """STS-B ``split``: local copy or the public Hub copy (:mod:`llm2embed.public_data`), loaded on first use."""
    from ..public_data import load_stsb, stsb_source

    name = "stsb" if split == "test" else f"stsb-{split}"
    return Task(name, "sts", lambda: load_stsb(split), {"split": split}, source=lambda: stsb_source(split))


def wiki_group(name: str) -> str:
    """The group of a wiki task name: ``wiki-dev-retrieval`` -> ``wiki-dev``, ``wiki-clustering`` -> ``wiki``."""
    return name.rsplit("-", 1)[0]


def _wiki_split(name: str) -> str:
    return WIKI_SPLIT_OF_GROUP[wiki_group(name)]


def _wiki_tasks(names: Sequence[str], max_words: int | None, train_size: int) -> list[Task]:
    from .wiki import cached_wiki_benchmark, wiki_corpus_path

    path = wiki_corpus_path()  # fail now, with the install hint, rather than mid-run

    def task(name: str) -> Task:
        split = _wiki_split(name)
        kind = name.rsplit("-", 1)[1]

        def bench():
            return cached_wiki_benchmark(max_words, train_size, split)

        loaders = {"retrieval": lambda: bench().retrieval,
                   "classification": lambda: (bench().classification_train, bench().classification_test),
                   "clustering": lambda: bench().clustering}
        info = {"path": str(path), "max_words": max_words, "train_size": train_size, "split": split}
        if split == "dev":
            info["instruction_of"] = f"{WIKI_TASK_GROUP['test']}-{kind}"  # dev reuses the test task's instruction
        return Task(name, kind, loaders[kind], info)

    return [task(n) for n in names]


def _file_task(kind: str, target: str) -> Task:
    from .classification import load_classification_dir, load_labelled
    from .pair_classification import load_pairs
    from .retrieval import load_beir
    from .sts import load_sts

    path = Path(target).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"task {kind}:{target}: {path} does not exist")
    loaders = {"sts": load_sts, "retrieval": load_beir, "classification": load_classification_dir,
               "clustering": load_labelled, "pair-classification": load_pairs}
    stem = path.name if path.is_dir() else path.stem
    return Task(f"{kind}:{stem}", kind, lambda: loaders[kind](path), {"path": str(path.resolve())})


def _one_task(name: str) -> Task:
    if name == "stsb":
        return _stsb_task()
    if name in ("stsb-dev", "stsb-train"):
        return _stsb_task(name.split("-")[1])
    kind, _, target = name.partition(":")
    kind = "pair-classification" if kind == "pair" else kind
    if target and kind in MAIN_METRIC:
        return _file_task(kind, target)
    raise ValueError(f"unknown task {name!r}; accepted: {ACCEPTED}")


def parse_tasks(tasks: str | Sequence[str], wiki_max_words: int | None = None,
                wiki_train_size: int | None = None) -> list[Task]:
    """Turn ``"stsb,wiki"`` (or a list of such strings) into :class:`Task` objects, in order, without repeats."""
    from .wiki import DEFAULT_MAX_WORDS, DEFAULT_TRAIN_SIZE

    items = [tasks] if isinstance(tasks, str) else list(tasks)
    names = [n.strip() for item in items for n in str(item).split(",") if n.strip()]
    names = list(dict.fromkeys(w for n in names for w in WIKI_GROUPS.get(n, (n,))))
    if not names:
        raise ValueError(f"no task given; accepted: {ACCEPTED}")
    wiki_names = [n for n in names if n in WIKI_TASK_NAMES]
    wiki = {t.name: t for t in _wiki_tasks(
        wiki_names, DEFAULT_MAX_WORDS if wiki_max_words is None else wiki_max_words,
        DEFAULT_TRAIN_SIZE if wiki_train_size is None else wiki_train_size)} if wiki_names else {}
    out = [wiki[n] if n in wiki else _one_task(n) for n in names]
    duplicates = sorted({t.name for t in out if sum(u.name == t.name for u in out) > 1})
    if duplicates:
        raise ValueError(f"several tasks are named {duplicates[0]!r}; rename one of the files")
    return out


def load_instructions(instructions: str | os.PathLike | dict | None) -> dict[str, str]:
    """The instruction table: built-in defaults, overridden by a JSON file or dict of task/kind -> text.

    ``"none"`` (or ``"off"``) switches every instruction off, the defaults included.

    >>> load_instructions({"stsb": "Retrieve semantically similar text"})["stsb"]
    'Retrieve semantically similar text'
    >>> load_instructions("none")
    {}
    """
    if instructions is None:
        return dict(DEFAULT_INSTRUCTIONS)
    if isinstance(instructions, (str, os.PathLike)) and os.fspath(instructions).lower() in ("none", "off"):
        return {}
    if isinstance(instructions, dict):
        table = instructions
    else:
        path = Path(instructions)
        if not path.is_file():
            raise FileNotFoundError(f"instructions file {path} does not exist")
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ValueError("instructions must be a JSON object mapping task names to instruction strings")
    return {**DEFAULT_INSTRUCTIONS, **table}


def task_instruction(task: Task, table: dict[str, str]) -> str:
    """The instruction of ``task``: by task name, else its test twin's (dev tasks), else by kind, else ``""``.

    >>> task_instruction(parse_tasks("wiki-dev-retrieval")[0], {"wiki-retrieval": "Find the article"})
    'Find the article'
    """
    for key in (task.name, task.info.get("instruction_of"), task.kind):
        if key and key in table:
            return table[key].strip()
    return ""
