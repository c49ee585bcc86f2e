"""Evaluators, the Wikipedia benchmark, the embedding cache, model specs and the report (fake encoders only)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from llm2embed.evaluation.cache import CachedEncoder
from llm2embed.evaluation.classification import LabelledTexts, classification_metrics, evaluate_classification
from llm2embed.evaluation.clustering import clustering_metrics, evaluate_clustering
from llm2embed.evaluation.pair_classification import LabelledPairs, evaluate_pair_classification, load_pairs
from llm2embed.evaluation.report import markdown_table, write_report
from llm2embed.evaluation.retrieval import RetrievalData, evaluate_retrieval, load_beir
from llm2embed.evaluation.sts import STSPairs, evaluate_sts, load_sts, sts_spearman


# ------------------------------------------------------------------ test doubles
def _hash(word: str) -> int:
    return int(hashlib.md5(word.encode()).hexdigest(), 16)


class BagOfWords:
    """Deterministic fake encoder: hashed bag of words, instruction words at half weight, a tiny per-text
    jitter so no two different texts tie. Records every input it embeds."""

    uses_instructions = True

    def __init__(self, dim: int = 64, name: str = "bow", cache_key: str | None = None):
        self.dim, self.name, self.cache_key = dim, name, cache_key
        self.seen: list = []

    def encode(self, items, batch_size=32, show_progress_bar=None, convert_to_numpy=True, **kwargs):
        out = np.zeros((len(items), self.dim))
        for i, item in enumerate(items):
            self.seen.append(item)
            instruction, text = ("", item) if isinstance(item, str) else item
            for word in re.findall(r"\w+", text.lower()):
                out[i, _hash(word) % self.dim] += 1.0
            for word in re.findall(r"\w+", instruction.lower()):
                out[i, _hash(word) % self.dim] += 0.5
            out[i] += 1e-3 * np.random.default_rng(_hash(text) % 2**32).standard_normal(self.dim)
        return out.astype(np.float32)


class Lookup:
    """Returns a fixed vector per text (instructions ignored)."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def encode(self, items, **kwargs):
        return np.array([self.table[item if isinstance(item, str) else item[1]] for item in items], dtype=np.float32)


class Constant:
    def encode(self, items, **kwargs):
        return np.ones((len(items), 4), dtype=np.float32)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------ STS
def angle_encoder(pairs: STSPairs) -> Lookup:
    """sentence1 -> (1, 0); sentence2 -> a unit vector whose angle grows as the gold score falls."""
    table = {}
    for s1, s2, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores):
        table[s1] = [1.0, 0.0]
        angle = (5.0 - score) / 5.0 * (math.pi / 2)
        table[s2] = [math.cos(angle), math.sin(angle)]
    return Lookup(table)


def test_sts_perfect_and_constant_encoders(tmp_path):
    path = write_jsonl(tmp_path / "sts.jsonl", [
        {"sentence1": f"left {i}", "sentence2": f"right {i}", "score": s} for i, s in enumerate([0.5, 4.0, 2.0, 5.0])
    ])
    pairs = load_sts(path)
    perfect = evaluate_sts(angle_encoder(pairs), pairs)
    assert perfect["spearman"] == pytest.approx(100.0) and perfect["pearson"] > 90
    constant = evaluate_sts(Constant(), pairs)
    assert math.isnan(constant["spearman"]) and math.isnan(constant["pearson"])


def test_evaluate_sts_matches_sts_spearman(tmp_path):
    rows = [{"sentence1": "a man plays a guitar", "sentence2": "a man plays music", "score": 4.2},
            {"sentence1": "a cat sleeps", "sentence2": "stock markets fell", "score": 0.1},
            {"sentence1": "a woman sings", "sentence2": "a woman is singing a song", "score": 4.8},
            {"sentence1": "a dog runs", "sentence2": "a cat runs", "score": 2.0}]
    pairs = load_sts(write_jsonl(tmp_path / "p.jsonl", rows))
    enc = BagOfWords()
    assert evaluate_sts(enc, pairs)["spearman"] == pytest.approx(sts_spearman(enc, pairs))


# ------------------------------------------------------------------ retrieval
def beir_folder(tmp_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", [
        {"_id": "d1", "title": "Guitar", "text": "a stringed instrument"},
        {"_id": "d2", "text": "cats are small felines"},
        {"_id": "d3", "text": "the moon orbits the earth"},
    ])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "guitar"}, {"_id": "q2", "text": "moon"},
                                           {"_id": "q3", "text": "unjudged"}])
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\nq2\td2\t0\n")
    return folder


def test_load_beir(tmp_path):
    data = load_beir(beir_folder(tmp_path))
    assert data.corpus["d1"] == "Guitar a stringed instrument"
    assert data.query_ids == ["q1", "q2"]  # q3 has no relevant document; score-0 rows are not relevant
    assert data.relevant == {"q1": {"d1"}, "q2": {"d3"}}
    assert data.sizes() == {"queries": 2, "corpus": 3, "relevant_pairs": 2}


def test_retrieval_perfect_constant_and_hand_computed(tmp_path):
    data = load_beir(beir_folder(tmp_path))
    perfect = Lookup({"guitar": [1, 0, 0], "moon": [0, 0, 1], "Guitar a stringed instrument": [1, 0, 0],
                      "cats are small felines": [0, 1, 0], "the moon orbits the earth": [0, 0, 1]})
    assert evaluate_retrieval(perfect, data) == {"ndcg@10": 100.0, "mrr@10": 100.0, "recall@100": 100.0}
    # constant: every score ties, ties go by ascending corpus id -> q1 finds d1 first, q2 finds d3 third
    constant = evaluate_retrieval(Constant(), data)
    assert constant["mrr@10"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert constant["ndcg@10"] == pytest.approx(100 * (1 + 1 / math.log2(4)) / 2)
    assert constant["recall@100"] == pytest.approx(100.0)
    # q1's document ranked second: MRR 1/2, nDCG 1/log2(3)
    second = Lookup({"guitar": [1, 0, 0], "moon": [0, 0, 1], "Guitar a stringed instrument": [0.9, 0.1, 0],
                     "cats are small felines": [1, 0, 0], "the moon orbits the earth": [0, 0, 1]})
    got = evaluate_retrieval(second, data)
    assert got["mrr@10"] == pytest.approx(100 * (0.5 + 1) / 2)
    assert got["ndcg@10"] == pytest.approx(100 * (1 / math.log2(3) + 1) / 2)


def test_retrieval_instruction_on_queries_only():
    data = RetrievalData({"q": "guitar"}, {"d": "a guitar", "e": "a cat"}, {"q": {"d"}})
    enc = BagOfWords()
    evaluate_retrieval(enc, data, query_instruction="Find music")
    assert ["Find music", "guitar"] in enc.seen
    assert "a guitar" in enc.seen and ["Find music", "a guitar"] not in enc.seen


# ------------------------------------------------------------------ classification, clustering, pairs
def test_classification_separable_and_constant():
    train = LabelledTexts(["red apple", "red cherry", "blue sky", "blue sea", "red rose"], list("aabba"))
    test = LabelledTexts(["red wine", "red car", "red fox", "blue whale"], list("aaab"))
    table = {t: ([1.0, 0.0] if t.startswith("red") else [0.0, 1.0]) for t in train.texts + test.texts}
    assert evaluate_classification(Lookup(table), train, test) == {"accuracy": 100.0, "f1_macro": 100.0}
    # constant features: the classifier can only predict the training majority ("a")
    got = evaluate_classification(Constant(), train, test)
    assert got["accuracy"] == pytest.approx(75.0)
    f1_a = 2 * 0.75 * 1.0 / (0.75 + 1.0)
    assert got["f1_macro"] == pytest.approx(100 * (f1_a + 0.0) / 2)


def test_classification_is_deterministic():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 8)), [str(i % 3) for i in range(60)]
    assert classification_metrics(x[:40], y[:40], x[40:], y[40:]) == classification_metrics(x[:40], y[:40],
                                                                                             x[40:], y[40:])


def test_clustering_perfect_and_constant():
    data = LabelledTexts(["a1", "a2", "b1", "b2", "c1", "c2"], list("aabbcc"))
    table = {"a1": [1, 0, 0], "a2": [0.9, 0.1, 0], "b1": [0, 1, 0], "b2": [0.1, 0.9, 0], "c1": [0, 0, 1],
             "c2": [0, 0.1, 0.9]}
    assert evaluate_clustering(Lookup(table), data) == {"v_measure": 100.0}
    assert evaluate_clustering(Constant(), data) == {"v_measure": 0.0}
    assert clustering_metrics(np.array(list(table.values())), data.labels) == {"v_measure": 100.0}


def test_pair_classification(tmp_path):
    pairs = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", [
        {"sentence1": "x", "sentence2": "x2", "label": 1}, {"sentence1": "y", "sentence2": "y2", "label": 0},
        {"sentence1": "z", "sentence2": "z2", "label": 0}, {"sentence1": "w", "sentence2": "w2", "label": 1},
    ]))
    table = {"x": [1, 0], "x2": [1, 0.1], "y": [1, 0], "y2": [0, 1], "z": [0, 1], "z2": [1, 0.2], "w": [0, 1],
             "w2": [0.1, 1]}
    assert evaluate_pair_classification(Lookup(table), pairs) == {"ap": 100.0}
    # all similarities tie: AP = share of positives
    assert evaluate_pair_classification(Constant(), pairs)["ap"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="positive"):
        evaluate_pair_classification(Constant(), LabelledPairs(["a"], ["b"], np.array([0])))


# ------------------------------------------------------------------ Wikipedia benchmark
def synthetic_corpus(tmp_path):
    """Articles with known split membership; titles chosen by the md5 rule itself."""
    from llm2embed.evaluation.wiki import is_held_out

    held, train = [], []
    i = 0
    while len(held) < 6 or len(train) < 6:
        title = f"Article {i}"
        (held if is_held_out(title) else train).append(title)
        i += 1
    rows = {}
    topics = ["Arts", "History", "Uncategorized"]
    descriptions = ["Shared thing", "Shared thing", "", "Unique one", "Other", "Other"]
    for j, title in enumerate(held[:6]):
        rows[title] = {"title": title, "extract": f"held {j} " + "word " * 60, "description": descriptions[j],
                       "topic": topics[j % 3]}
    for j, title in enumerate(train[:6]):
        rows[title] = {"title": title, "extract": f"train {j} text", "description": "d", "topic": topics[j % 3]}
    path = tmp_path / "summaries.json"
    path.write_text(json.dumps(rows))
    return path, held[:6], train[:6]


def test_wiki_builder_on_synthetic_corpus(tmp_path):
    from llm2embed.evaluation.wiki import build_wiki_benchmark

    path, held, train = synthetic_corpus(tmp_path)
    bench = build_wiki_benchmark(path, max_words=10, train_size=3)
    r = bench.retrieval
    assert set(r.corpus) == set(held)
    assert all(len(text.split()) == 10 for text in r.corpus.values())
    assert sorted(r.queries.values()) == ["Other", "Shared thing", "Unique one"]  # empty description dropped
    shared = next(q for q, text in r.queries.items() if text == "Shared thing")
    assert r.relevant[shared] == {held[0], held[1]}
    assert "Uncategorized" not in bench.classification_test.labels + bench.classification_train.labels
    assert len(bench.classification_train) <= 3
    assert set(bench.classification_train.ids) <= set(train)
    assert bench.clustering.ids == bench.classification_test.ids


def test_wiki_dev_split_on_synthetic_corpus(tmp_path):
    from llm2embed.evaluation.wiki import build_wiki_benchmark

    path, held, train = synthetic_corpus(tmp_path)
    test = build_wiki_benchmark(path, max_words=10, train_size=2)
    dev = build_wiki_benchmark(path, max_words=10, train_size=2, split="dev")
    classifier_train = set(dev.classification_train.ids)
    assert classifier_train == set(test.classification_train.ids)  # the classifier learns from the same texts
    assert set(dev.retrieval.corpus) <= set(train) - classifier_train  # no held-out, no classifier-train article
    assert len(dev.retrieval.corpus) == min(len(held), len(train) - len(classifier_train))
    assert set(dev.clustering.ids) == set(dev.classification_test.ids) <= set(dev.retrieval.corpus)
    assert "Uncategorized" not in dev.classification_test.labels
    assert dev.retrieval.name == "wiki-dev-retrieval" and dev.fingerprint() != test.fingerprint()
    with pytest.raises(ValueError, match="split 'validation'"):
        build_wiki_benchmark(path, split="validation")


def test_wiki_dev_tasks_parse_and_take_the_test_instructions():
    from llm2embed.evaluation.tasks import load_instructions, parse_tasks, task_instruction, wiki_group

    tasks = parse_tasks("wiki-dev,stsb-dev")
    assert [t.name for t in tasks] == ["wiki-dev-retrieval", "wiki-dev-classification", "wiki-dev-clustering",
                                       "stsb-dev"]
    assert [t.kind for t in tasks[:3]] == ["retrieval", "classification", "clustering"]
    assert [t.info["split"] for t in tasks[:3] + parse_tasks("wiki-retrieval")] == ["dev", "dev", "dev", "test"]
    assert [wiki_group(t.name) for t in tasks[:2] + parse_tasks("wiki-clustering")] == ["wiki-dev", "wiki-dev", "wiki"]
    table = load_instructions({"wiki-classification": "Classify the topic", "wiki-dev-clustering": "",
                               "clustering": "Group by theme"})
    by_name = {t.name: task_instruction(t, table) for t in tasks}
    assert by_name["wiki-dev-retrieval"] == table["wiki-retrieval"]
    assert by_name["wiki-dev-classification"] == "Classify the topic"
    assert by_name["wiki-dev-clustering"] == ""  # its own entry, even empty, wins over the kind
    assert by_name["stsb-dev"] == ""


@pytest.fixture(scope="module")
def wiki_bench():
    from llm2embed.evaluation.wiki import build_wiki_benchmark

    return build_wiki_benchmark()


def test_wiki_benchmark_sizes_and_no_leak(wiki_bench):
    from llm2embed.evaluation.wiki import is_held_out

    sizes = wiki_bench.sizes()
    assert sizes["retrieval"]["corpus"] == 2011
    assert sizes["retrieval"]["queries"] == 1925
    assert sizes["classification"] == {"train": 500, "test": 1806, "labels": 11}
    assert sizes["clustering"] == {"texts": 1806, "clusters": 11}
    held_out = set(wiki_bench.retrieval.corpus)
    assert all(is_held_out(t) for t in held_out)
    train_ids = set(wiki_bench.classification_train.ids)
    assert not train_ids & held_out and not any(is_held_out(t) for t in train_ids)
    assert set(wiki_bench.classification_train.texts).isdisjoint(wiki_bench.classification_test.texts)
    assert max(len(t.split()) for t in wiki_bench.retrieval.corpus.values()) <= 24


def test_wiki_dev_split_sizes_and_no_leak(wiki_bench):
    from llm2embed.evaluation.wiki import build_wiki_benchmark, is_held_out

    dev = build_wiki_benchmark(split="dev")
    assert len(dev.retrieval.corpus) == len(wiki_bench.retrieval.corpus) == 2011
    assert not any(is_held_out(t) for t in dev.retrieval.corpus)
    assert set(dev.retrieval.corpus).isdisjoint(wiki_bench.classification_train.ids)
    assert dev.classification_train.ids == wiki_bench.classification_train.ids
    assert len(dev.classification_test.label_set) == 11 and len(dev.classification_test) > 1500


def test_wiki_benchmark_is_deterministic(wiki_bench):
    from llm2embed.evaluation.wiki import build_wiki_benchmark

    again = build_wiki_benchmark()
    assert again.fingerprint() == wiki_bench.fingerprint() == wiki_bench.settings["fingerprint"]
    assert again.retrieval.queries == wiki_bench.retrieval.queries
    assert again.classification_train.ids == wiki_bench.classification_train.ids


# ------------------------------------------------------------------ cache
def test_cached_encoder_memory_and_disk(tmp_path):
    enc = BagOfWords()
    loads = []
    cached = CachedEncoder(lambda: loads.append(1) or enc, tmp_path / "m")
    with cached.task("a"):
        first = cached.encode(["x y", ["Do:", "x y"], "x y"])
    with cached.task("b"):
        cached.encode(["x y", "z"])
    assert enc.seen == ["x y", ["Do:", "x y"], "z"] and loads == [1]
    assert cached.computed == 3
    np.testing.assert_allclose(first[0], first[2])
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"a.npz", "b.npz"}

    fresh = CachedEncoder(lambda: pytest.fail("the model must not load when everything is cached"), tmp_path / "m")
    with fresh.task("a"):
        again = fresh.encode(["x y", ["Do:", "x y"]])
    np.testing.assert_allclose(again, first[:2])
    assert fresh.computed == 0 and not fresh.loaded


# ------------------------------------------------------------------ model specs
def test_model_specs(tmp_path, llama_folder):
    from llm2embed.evaluation.models import parse_model_spec

    s = parse_model_spec("smollm2-135m")
    assert (s.kind, s.bidirectional, s.uses_instructions) == ("encoder", True, True)
    s = parse_model_spec("smollm2-135m:causal")
    assert (s.kind, s.source, s.bidirectional) == ("encoder", "smollm2-135m", False)
    s = parse_model_spec(llama_folder)
    assert (s.kind, s.bidirectional) == ("encoder", True)
    st_folder = tmp_path / "st"
    st_folder.mkdir()
    (st_folder / "modules.json").write_text("[]")
    assert parse_model_spec(str(st_folder)).kind == "sentence-transformers"
    (st_folder / "llm2embed.json").write_text("{}")
    assert parse_model_spec(str(st_folder)).kind == "encoder"
    with pytest.raises(FileNotFoundError):
        parse_model_spec("./no/such/model")
    assert parse_model_spec("smollm2-135m").fingerprint(512) != parse_model_spec("smollm2-135m:causal").fingerprint(512)
    s = parse_model_spec(f"{llama_folder}:causal:bfloat16")
    assert (s.bidirectional, s.dtype, s.source) == (False, "bfloat16", str(Path(llama_folder).resolve()))
    assert s.fingerprint(512) != parse_model_spec(f"{llama_folder}:causal").fingerprint(512)


def test_reduced_precision_spec_loads_in_that_dtype(llama_folder):
    """`<spec>:bfloat16` scores the same model in bfloat16: close to, not equal to, float32."""
    from llm2embed.evaluation.models import load_model

    full, half = load_model(llama_folder), load_model(f"{llama_folder}:bfloat16")
    assert half.info()["dtype"] == "bfloat16" and full.info()["dtype"] == "float32"
    texts = ["a tiny test sentence", "another one, a little longer than the first"]
    a, b = full.encode(texts, convert_to_numpy=True), half.encode(texts, convert_to_numpy=True)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert not np.array_equal(a, b) and cos.min() > 0.95


def test_minilm_spec():
    from llm2embed.evaluation.models import parse_model_spec

    s = parse_model_spec("minilm")
    assert s.kind == "sentence-transformers" and not s.uses_instructions
    with pytest.raises(ValueError, match="causal"):
        parse_model_spec("minilm:causal")
    with pytest.raises(ValueError, match="bfloat16"):
        parse_model_spec("minilm:bfloat16")


# ------------------------------------------------------------------ report and runner
def small_tasks(tmp_path):
    sts = write_jsonl(tmp_path / "sts.jsonl", [
        {"sentence1": "a man plays a guitar", "sentence2": "a man plays music", "score": 4.2},
        {"sentence1": "a cat sleeps", "sentence2": "stock markets fell", "score": 0.1},
        {"sentence1": "a woman sings", "sentence2": "a woman is singing a song", "score": 4.8},
        {"sentence1": "a dog runs", "sentence2": "a cat runs", "score": 2.0}])
    cls = tmp_path / "topics"
    cls.mkdir()
    write_jsonl(cls / "train.jsonl", [{"text": t, "label": lab} for t, lab in
                                      [("red apple", "fruit"), ("green pear", "fruit"), ("fast car", "car"),
                                       ("old truck", "car")]])
    write_jsonl(cls / "test.jsonl", [{"text": "red pear", "label": "fruit"}, {"text": "fast truck", "label": "car"}])
    clu = write_jsonl(tmp_path / "clusters.jsonl", [{"text": t, "label": t.split()[0]} for t in
                                                    ["apple pie", "apple tart", "car engine", "car wheel"]])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"sentence1": "a red apple", "sentence2": "an apple that is red", "label": 1},
        {"sentence1": "a fast car", "sentence2": "the moon at night", "label": 0}])
    return [f"sts:{sts}", f"retrieval:{beir_folder(tmp_path)}", f"classification:{cls}", f"clustering:{clu}",
            f"pair:{pairs}"]


def test_markdown_table_bolds_the_best():
    results = {"tasks": {"t1": {"main_metric": "spearman"}, "t2": {"main_metric": "ndcg@10"}},
               "models": {"a": {"scores": {"t1": {"spearman": 10.0}, "t2": {"ndcg@10": float("nan")}}},
                          "b": {"scores": {"t1": {"spearman": 20.0}, "t2": {"ndcg@10": 5.0}}}}}
    table = markdown_table(results)
    assert "| a | 10.00 | n/a |" in table
    assert "| b | **20.00** | **5.00** |" in table


def test_run_eval_writes_report_and_reuses_cache(tmp_path):
    from llm2embed.evaluation.runner import run_eval

    tasks = small_tasks(tmp_path)
    out = tmp_path / "report"
    lines: list[str] = []
    first = BagOfWords(name="model", cache_key="v1")
    results = run_eval(first, tasks, report_dir=out, echo=lines.append, show_progress_bar=False)
    assert set(results["models"]["model"]["scores"]) == {"sts:sts", "retrieval:beir", "classification:topics",
                                                         "clustering:clusters", "pair-classification:pairs"}
    for name in ("report.md", "results.json", "report.png"):
        assert (out / name).is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["retrieval:beir"]["sizes"] == {"queries": 2, "corpus": 3, "relevant_pairs": 2}
    assert saved["tasks"]["retrieval:beir"]["instruction"]  # retrieval has a default query instruction
    assert "torch" in saved["library_versions"] and "scikit-learn" in saved["library_versions"]
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model |" in (out / "report.md").read_text()
    assert any("| model |" in line for line in lines)

    # adding a baseline: the first model is answered from the cache and embeds nothing
    again, baseline = BagOfWords(name="model", cache_key="v1"), BagOfWords(dim=16, name="baseline")
    results2 = run_eval(again, tasks, baselines=[baseline], report_dir=out, echo=None, show_progress_bar=False)
    assert again.seen == [] and baseline.seen
    assert results2["models"]["model"]["scores"] == results["models"]["model"]["scores"]
    assert list(json.loads((out / "results.json").read_text())["models"]) == ["model", "baseline"]


def test_run_eval_instructions(tmp_path):
    from llm2embed.evaluation.runner import run_eval

    tasks = small_tasks(tmp_path)
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps({"sts:sts": "Compare meaning", "retrieval": ""}))
    enc = BagOfWords(name="m")
    results = run_eval(enc, tasks[:2], instructions=instructions, echo=None, show_progress_bar=False)
    assert results["models"]["m"]["instructions"] == {"sts:sts": "Compare meaning", "retrieval:beir": ""}
    assert ["Compare meaning", "a cat sleeps"] in enc.seen
    assert not any(isinstance(x, list) and x[1] == "guitar" for x in enc.seen)
    with pytest.raises(ValueError, match="unknown task"):
        run_eval(enc, "nope", echo=None)


def test_run_eval_with_real_tiny_encoder(tmp_path, llama_folder):
    """The spec path end to end: a tiny Llama folder, bidirectional and ':causal', settings in results.json."""
    from llm2embed.evaluation.runner import run_eval

    tasks = small_tasks(tmp_path)[:1]
    results = run_eval(llama_folder, tasks, baselines=[f"{llama_folder}:causal"], report_dir=tmp_path / "r",
                       echo=None, show_progress_bar=False)
    bi, causal = (results["models"][k]["settings"] for k in (llama_folder, f"{llama_folder}:causal"))
    assert bi["attention"] == "bidirectional" and causal["attention"] == "causal"
    assert bi["pooling_mode"] == causal["pooling_mode"] == "mean" and bi["dimension"] == 64
    assert results["reference_check"] == []


def test_reference_check():
    from llm2embed.evaluation.runner import reference_check

    results = {"models": {"minilm": {"scores": {"stsb": {"spearman": 82.1}}, "instructions": {"stsb": ""}},
                          "smollm2-135m": {"scores": {"stsb": {"spearman": 17.0}}, "instructions": {"stsb": ""}},
                          "other": {"scores": {"stsb": {"spearman": 50.0}}}}}
    checks = {c["model"]: c["ok"] for c in reference_check(results)}
    assert checks == {"minilm": True, "smollm2-135m": False}


def test_report_files_parse(tmp_path):
    results = {"tasks": {"stsb": {"kind": "sts", "main_metric": "spearman", "sizes": {"pairs": 3}}},
               "models": {"a": {"scores": {"stsb": {"spearman": float("nan"), "pearson": 1.0}}, "settings": {}}}}
    paths = write_report(results, tmp_path)
    assert json.loads(paths["json"].read_text())["models"]["a"]["scores"]["stsb"]["spearman"] is None
    from matplotlib.image import imread

    assert imread(paths["plot"]).ndim == 3
