"""The mteb 2.x adapter: local mteb tasks (no Hub) give the same scores as llm2embed's evaluators."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mteb  # noqa: E402  (a dev dependency)

from datasets import Dataset  # noqa: E402
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.sts import AbsTaskSTS  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402
from test_evaluation import BagOfWords, beir_folder, write_jsonl  # noqa: E402

from llm2embed.evaluation.mteb import MTEBEncoder, mteb_instruction  # noqa: E402
from llm2embed.evaluation.retrieval import RetrievalData, evaluate_retrieval, load_beir  # noqa: E402
from llm2embed.evaluation.sts import evaluate_sts, load_sts  # noqa: E402

COMMON = dict(
    description="A small local task for testing the llm2embed adapter.",
    reference=None,
    dataset={"path": "local/llm2embed-test", "revision": "1"},
    category="t2t",
    eval_splits=["test"],
    eval_langs=["eng-Latn"],
    date=("2024-01-01", "2024-01-02"),
    dialect=[],
    domains=[],
    task_subtypes=[],
    license="cc-by-4.0",
    annotations_creators="derived",
    modalities=["text"],
    sample_creation="found",
    bibtex_citation="",
)

STS_ROWS = [
    ("a man plays a guitar", "a man plays music", 4.2), ("a cat sleeps", "stock markets fell today", 0.1),
    ("a woman sings", "a woman is singing a song", 4.8), ("a dog runs in the park", "a cat runs", 2.0),
    ("the sun is hot", "the sun is very hot", 4.5), ("children play football", "kids play soccer", 3.6),
    ("a plane takes off", "rain falls on the roof", 0.4), ("he reads a book", "she writes a letter", 1.2),
]


class LocalSTS(AbsTaskSTS):
    metadata = TaskMetadata(name="LocalSTS", type="STS", main_score="cosine_spearman", **COMMON)
    min_score, max_score = 0, 5
    path: str = ""

    def load_data(self, num_proc=None, **kwargs):
        pairs = load_sts(self.path)
        self.dataset = {"default": {"test": Dataset.from_dict(
            {"sentence1": pairs.sentences1, "sentence2": pairs.sentences2, "score": pairs.scores.tolist()})}}
        self.data_loaded = True


class LocalRetrieval(AbsTaskRetrieval):
    metadata = TaskMetadata(name="LocalRetrieval", type="Retrieval", main_score="ndcg_at_10", **COMMON)
    data: RetrievalData | None = None

    def load_data(self, num_proc=None, **kwargs):
        d = self.data
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": d.queries[q]} for q in d.query_ids]),
            corpus=Dataset.from_list([{"id": c, "text": t} for c, t in d.corpus.items()]),
            relevant_docs={q: {doc: 1 for doc in docs} for q, docs in d.relevant.items()},
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_mteb(adapter, task):
    result = mteb.evaluate(adapter, [task], cache=None, show_progress_bar=False,
                           encode_kwargs={"batch_size": 4, "show_progress_bar": False})
    return result.task_results[0].scores["test"][0]


def bigger_beir(tmp_path):
    folder = beir_folder(tmp_path)
    topics = ["guitar music", "moon space", "cats pets", "bread baking", "rivers water", "trains travel"]
    corpus = [{"_id": f"x{i:02d}", "text": f"{topics[i % 6]} note {i}"} for i in range(30)]
    queries = [{"_id": f"t{i}", "text": topics[i]} for i in range(6)]
    qrels = [f"t{i}\tx{j:02d}\t1" for i in range(6) for j in range(30) if j % 6 == i and j < 18]
    with open(folder / "corpus.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in corpus)
    with open(folder / "queries.jsonl", "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in queries)
    with open(folder / "qrels" / "test.tsv", "a") as fh:
        fh.write("\n".join(qrels) + "\n")
    return folder


def test_sts_scores_equal_ours(tmp_path):
    path = write_jsonl(tmp_path / "sts.jsonl", [{"sentence1": a, "sentence2": b, "score": s} for a, b, s in STS_ROWS])
    LocalSTS.path = str(path)
    enc = BagOfWords()
    scores = run_mteb(MTEBEncoder(enc, name="test/bow", instructions={}), LocalSTS())
    ours = evaluate_sts(enc, load_sts(path))
    assert 100 * scores["cosine_spearman"] == pytest.approx(ours["spearman"], abs=1e-6)
    assert 100 * scores["cosine_pearson"] == pytest.approx(ours["pearson"], abs=1e-4)


def test_retrieval_scores_equal_ours(tmp_path):
    data = load_beir(bigger_beir(tmp_path))
    LocalRetrieval.data = data
    enc = BagOfWords()
    instruction = "Given a topic, retrieve notes about it"
    adapter = MTEBEncoder(enc, name="test/bow", instructions={"LocalRetrieval": instruction})
    scores = run_mteb(adapter, LocalRetrieval())
    ours = evaluate_retrieval(enc, data, query_instruction=mteb_instruction(instruction))
    assert 100 * scores["ndcg_at_10"] == pytest.approx(ours["ndcg@10"], abs=1e-3)
    assert 100 * scores["mrr_at_10"] == pytest.approx(ours["mrr@10"], abs=1e-3)
    assert 100 * scores["recall_at_100"] == pytest.approx(ours["recall@100"], abs=1e-3)
    # documents were embedded without the instruction, queries with it
    assert [mteb_instruction(instruction), "guitar"] in enc.seen
    assert not any(isinstance(x, list) and x[1] == "the moon orbits the earth" for x in enc.seen)


def test_adapter_protocol_and_default_instructions():
    from mteb.models.models_protocols import EncoderProtocol

    adapter = MTEBEncoder(BagOfWords(), name="bow")
    assert isinstance(adapter, EncoderProtocol)
    assert adapter.mteb_model_meta.name == "llm2embed/bow"
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(np.asarray(adapter.similarity(a, a)), np.eye(2), atol=1e-6)
    np.testing.assert_allclose(np.asarray(adapter.similarity_pairwise(a, a)), [1.0, 1.0], atol=1e-6)
    # without a table the task's own prompt is used (STS: mteb's default), documents never get one
    assert adapter.instruction_for(LocalSTS.metadata, None) == "Retrieve semantically similar text:"
    assert adapter.instruction_for(LocalRetrieval.metadata, "document") == ""
