"""A saved encoder used from plain sentence-transformers (in a process that never imports llm2embed) and from
LlamaIndex's HuggingFaceEmbedding; the RAG example run offline on a small sample."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llm2embed import Encoder, format_instruction
from llm2embed.integrations import (
    encode_queries,
    llamaindex_embedding,
    query_instruction,
    set_query_instruction,
    stored_query_prompt,
)

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "Given a question, retrieve passages that answer it:"
TINY_INSTRUCTION = "retrieve passages about music :"
POOLING_MODES = ["mean", "weighted_mean", "eos_token", "last_token", "bos_token"]

SENTENCES = [
    "A man plays a guitar.",
    "music",
    "The cat sat on the mat in the kitchen while the rain kept falling outside.",
    "Stocks fell sharply on Monday after the central bank raised interest rates by half a point.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "x",
    "OK!",
    "¿Dónde está la biblioteca?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Emoji test: 🎸🎶🙂",
    "def add(a, b):\n    return a + b",
    "SELECT name FROM users WHERE age > 30;",
    "The year 1969 saw the first crewed Moon landing (Apollo 11).",
    "3.14159 is approximately pi; e is about 2.71828.",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines",
    "A woman is slicing an onion.",
    "Someone is cutting vegetables in a kitchen.",
    "A dog runs across the snowy field chasing a red ball.",
    "Two children are playing football in the park.",
    "The committee postponed its decision until further evidence could be gathered and reviewed.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The mitochondria is the powerhouse of the cell.",
    "Shakespeare wrote Hamlet around 1600.",
    "Mount Kilimanjaro is the highest mountain in Africa.",
    "He said, \"I'll be there at 5 p.m.\" — but he never came.",
    "e-mail: someone@example.com, URL: https://example.org/path?q=1",
    "ALL CAPS SENTENCE FOR TESTING",
    "lowercase sentence without punctuation",
    "Short.",
    "The quick brown fox jumps over the lazy dog.",
    "A quantum computer uses qubits, which can be in superpositions of states.",
    "Rain is expected tomorrow in the northern regions.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "She finished the marathon in under three hours.",
    "Neural networks learn representations from data.",
    "The museum is closed on Mondays.",
    "An orchestra is performing a symphony by Beethoven.",
    "Please retrieve the document about volcanoes.",
    "I can't believe it's already December!",
    "Water boils at 100 degrees Celsius at sea level.",
    "The treaty was signed in 1648, ending the Thirty Years' War.",
    "Bauxite is the world's main source of aluminium.",
    "a b c d e f g h i j k l m n o p",
    "repeat repeat repeat repeat repeat repeat repeat repeat",
    "The train to Edinburgh leaves from platform nine.",
    " ".join(["A long paragraph about the history of music, instruments and performance."] * 6),
    "Final sentence of the set.",
]
# longer than the tiny models' 128 positions (truncated the same way by both); the embedded default's 512-token
# limit is left alone there, as one 512-token text pads its whole batch and costs a minute on a CPU
TRUNCATED = " ".join(["A very long paragraph about the history of music, instruments and performance."] * 40)
QUERIES = ["who plays the guitar?", "capital of France", "highest mountain in Africa", "how do plants make energy?"]

# Runs in a fresh interpreter: plain sentence-transformers, llm2embed imported only after the model is loaded,
# encoded and checked, to run the project's probe on model[0].auto_model.
ST_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from sentence_transformers import SentenceTransformer

    folders, out = sys.argv[1:-1], sys.argv[-1]
    sentences, queries = json.loads(open(out + "/inputs.json").read())
    report, models = {}, []
    for i, folder in enumerate(folders):
        model = SentenceTransformer(folder, device="cpu")
        models.append(model)
        docs = model.encode(sentences, batch_size=16)            # padded batches
        single = model.encode(sentences[:3], batch_size=1)       # unpadded
        q = model.encode_query(queries, batch_size=3)
        # an independent bidirectionality check: the first token must see a change of the last one
        auto = model[0].auto_model
        ids = model.tokenizer("a b c d e", return_tensors="pt")["input_ids"]
        changed = ids.clone()
        changed[0, -2] = (ids[0, -2] + 7) % auto.config.vocab_size   # a later token (before any appended EOS)
        with torch.inference_mode():
            h, h2 = (auto(input_ids=x).last_hidden_state for x in (ids, changed))
        first_token_sees_last = not torch.allclose(h[0, 0], h2[0, 0], atol=1e-6)
        np.savez(f"{out}/{i}.npz", docs=docs, single=single, queries=q)
        report[folder] = {"prompts": model.prompts, "default_prompt_name": model.default_prompt_name,
                          "include_prompt": model[1].include_prompt, "first_token_sees_last": first_token_sees_last,
                          "llm2embed_imported_before_probe": "llm2embed" in sys.modules}
    from llm2embed import probe_bidirectional   # only now
    for folder, model in zip(folders, models):
        report[folder]["probe"] = probe_bidirectional(model[0].auto_model)
    open(out + "/report.json", "w").write(json.dumps(report))
    """
)


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def run_plain_sentence_transformers(folders, tmp_path, sentences):
    (tmp_path / "inputs.json").write_text(json.dumps([sentences, QUERIES]))
    proc = subprocess.run([sys.executable, "-c", ST_SCRIPT, *map(str, folders), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    return report, [dict(np.load(tmp_path / f"{i}.npz")) for i in range(len(folders))]


def check_same_as_encoder(enc, instruction, report, arrays, sentences):
    assert report["llm2embed_imported_before_probe"] is False
    assert report["first_token_sees_last"] is True and report["probe"] is True
    assert report["prompts"] == {"query": format_instruction(instruction), "document": ""}
    assert report["default_prompt_name"] is None and report["include_prompt"] is False
    ref = enc.encode(sentences, batch_size=7)
    assert cosines(arrays["docs"], ref).min() >= 0.9999
    assert cosines(arrays["single"], ref[:3]).min() >= 0.9999
    ref_q = enc.encode([[instruction, q] for q in QUERIES])
    assert cosines(arrays["queries"], ref_q).min() >= 0.9999
    assert cosines(arrays["queries"], enc.encode(QUERIES)).min() < 0.9999  # the instruction did something


def test_query_instruction_is_stored_as_prompt(llama_folder, tmp_path):
    enc = Encoder.from_pretrained(llama_folder)
    assert query_instruction(enc) == ""
    before = enc.encode(SENTENCES[:4])
    assert set_query_instruction(enc, "  " + TINY_INSTRUCTION + " ") == format_instruction(TINY_INSTRUCTION)
    assert enc.st_model.prompts == {"query": TINY_INSTRUCTION + "\n", "document": ""}
    assert enc.st_model.default_prompt_name is None
    np.testing.assert_allclose(enc.encode(SENTENCES[:4]), before, atol=1e-6)  # plain encode: no prompt
    np.testing.assert_allclose(encode_queries(enc, QUERIES), enc.encode([[TINY_INSTRUCTION, q] for q in QUERIES]),
                               atol=1e-6)

    enc.save(tmp_path / "enc")
    config = json.loads((tmp_path / "enc/config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": TINY_INSTRUCTION + "\n", "document": ""}
    assert config["default_prompt_name"] is None
    assert stored_query_prompt(tmp_path / "enc") == query_instruction(tmp_path / "enc") == TINY_INSTRUCTION + "\n"
    reloaded = Encoder.from_pretrained(tmp_path / "enc")
    assert query_instruction(reloaded) == TINY_INSTRUCTION + "\n"  # kept through load and save

    set_query_instruction(reloaded, None)
    reloaded.save(tmp_path / "plain")
    assert stored_query_prompt(tmp_path / "plain") == ""
    with pytest.raises(FileNotFoundError):
        stored_query_prompt(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:.*longer than max_length")  # truncation is part of the check
def test_plain_sentence_transformers_tiny_all_pooling_modes(llama_folder, tmp_path):
    encoders, folders = [], []
    for mode in POOLING_MODES:
        enc = Encoder.from_pretrained(llama_folder, pooling_mode=mode)
        set_query_instruction(enc, TINY_INSTRUCTION)
        folders.append(enc.save(tmp_path / mode))
        encoders.append(enc)
    (tmp_path / "run").mkdir()
    sentences = SENTENCES[:-1] + [TRUNCATED]
    report, arrays = run_plain_sentence_transformers(folders, tmp_path / "run", sentences)
    for enc, folder, arr in zip(encoders, folders, arrays):
        check_same_as_encoder(enc, TINY_INSTRUCTION, report[str(folder)], arr, sentences)


def test_plain_sentence_transformers_embedded_default(smollm2, tmp_path):
    previous = (dict(smollm2.st_model.prompts), smollm2.st_model.default_prompt_name)
    try:
        set_query_instruction(smollm2, INSTRUCTION)
        folder = smollm2.save(tmp_path / "smollm2-emb")
    finally:
        smollm2.st_model.prompts, smollm2.st_model.default_prompt_name = previous
    (tmp_path / "run").mkdir()
    report, arrays = run_plain_sentence_transformers([folder], tmp_path / "run", SENTENCES)
    check_same_as_encoder(smollm2, INSTRUCTION, report[str(folder)], arrays[0], SENTENCES)


@pytest.fixture(scope="module")
def tiny_saved(llama_folder, tmp_path_factory):
    enc = Encoder.from_pretrained(llama_folder)
    set_query_instruction(enc, TINY_INSTRUCTION)
    return enc, str(enc.save(tmp_path_factory.mktemp("li") / "tiny-encoder"))


def test_llamaindex_huggingface_embedding(tiny_saved):
    import llama_index.embeddings.huggingface  # noqa: F401  (dev dependency)
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    enc, path = tiny_saved
    texts = SENTENCES[:12]
    plain = HuggingFaceEmbedding(model_name=path, device="cpu")
    # text path: the same embeddings (HuggingFaceEmbedding normalises by default)
    assert cosines(plain.get_text_embedding_batch(texts), enc.encode(texts)).min() >= 0.9999
    # documented pitfall: without query_instruction= the saved instruction is overridden, queries get none
    q_plain = [plain.get_query_embedding(q) for q in QUERIES]
    assert cosines(q_plain, enc.encode(QUERIES)).min() >= 0.9999
    instructed = enc.encode([[TINY_INSTRUCTION, q] for q in QUERIES])
    assert cosines(q_plain, instructed).min() < 0.9999
    # with the stored instruction (the helper, or the argument by hand) queries match Encoder.encode
    for embed in (llamaindex_embedding(path, device="cpu"),
                  HuggingFaceEmbedding(model_name=path, device="cpu", query_instruction=stored_query_prompt(path))):
        assert cosines([embed.get_query_embedding(q) for q in QUERIES], instructed).min() >= 0.9999
        assert cosines(embed.get_text_embedding_batch(texts), enc.encode(texts)).min() >= 0.9999


@pytest.mark.filterwarnings("ignore:.*longer than max_length")  # the tiny model's 128 positions
def test_rag_llamaindex_example_offline(tiny_saved, capsys):
    import llama_index.core  # noqa: F401  (dev dependency)
    spec = importlib.util.spec_from_file_location("rag_llamaindex", ROOT / "examples/rag_llamaindex.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    enc, path = tiny_saved
    results = example.main(["--model", path, "--articles", "8", "--top-k", "3", "--max-words", "40"])
    out = capsys.readouterr().out
    assert len(results) == 5 and all(len(hits) == 3 for _, hits in results)
    assert out.count("\nQ: ") == 5
    # the retriever's ranking is the one the encoder gives with the stored instruction
    articles = example.held_out_sample(8, 40)
    docs = enc.encode([text for _, text, _ in articles], normalize_embeddings=True)
    for query, hits in results:
        q = enc.encode([[TINY_INSTRUCTION, query]], normalize_embeddings=True)[0]
        scores = docs @ q
        expected = [articles[i][0] for i in np.argsort(-scores)[:3]]
        assert [title for title, _, _ in hits] == expected
        np.testing.assert_allclose([s for _, s, _ in hits], np.sort(scores)[::-1][:3], atol=1e-4)
