"""The training sequence length never leaks into a saved encoder: every stage's output takes long inputs."""

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from llm2embed.pipeline import default_config, run_pipeline
from tiny import tiny_folder

PASSAGE = " ".join(["a man plays a guitar on the stage and a woman slices an onion in the kitchen"] * 24)


@pytest.fixture(scope="module")
def three_stages(tmp_path_factory):
    """MNTP, SimCSE and supervised on a tiny Llama with 1,024 positions, each trained at 16 tokens."""
    root = tmp_path_factory.mktemp("lengths")
    model = tiny_folder(root / "model", "llama", max_position_embeddings=1024)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"a man plays a guitar on the stage number {i} and the woman slices an onion"
                                for i in range(40)))
    triplets = root / "triplets.jsonl"
    triplets.write_text("\n".join(json.dumps({"query": f"music lessons {i}", "positive": f"guitar lessons {i}",
                                              "negative": "the market fell"}) for i in range(24)))
    common = {"max_steps": 2, "stop_after_n_steps": 2, "save_steps": 2, "use_cpu": True, "disable_tqdm": True,
              "lora_r": 4, "learning_rate": 1e-3, "max_seq_length": 16}
    config = default_config("llm2vec")
    config.update(model=model, output=str(root / "run"))
    config["mntp"] = {"train_file": str(corpus), "per_device_train_batch_size": 4, **common}
    config["simcse"] = {"dataset_file_path": str(corpus), "per_device_train_batch_size": 8, **common}
    config["supervised"] = {"dataset_file_path": str(triplets), "per_device_train_batch_size": 8, **common}
    config["evaluation"]["selection"] = None  # dev selection has its own tests
    run_pipeline(config, evaluate=False, echo=lambda _m: None)
    return root / "run"


@pytest.mark.parametrize("stage", ["mntp", "simcse", "supervised"])
def test_every_stage_embeds_a_400_token_passage_in_plain_sentence_transformers(three_stages, stage):
    folder = three_stages / stage / "encoder"
    assert json.loads((folder / "llm2embed.json").read_text())["max_length"] == 512
    st = SentenceTransformer(str(folder))
    assert st.max_seq_length == 512
    features = st[0].preprocess([PASSAGE])
    n_tokens = int(features["attention_mask"].sum())
    assert 400 <= n_tokens <= 512, n_tokens
    assert n_tokens == len(st.tokenizer(PASSAGE)["input_ids"])  # nothing cut
    # the tail counts: the passage is not embedded as its first 16 (training) or 64 tokens
    head = st.tokenizer.decode(st.tokenizer(PASSAGE)["input_ids"][:64])
    full, cut = st.encode([PASSAGE, head])
    assert np.dot(full, cut) / np.linalg.norm(full) / np.linalg.norm(cut) < 0.99999


def test_an_explicit_length_is_kept(three_stages, tmp_path):
    from llm2embed import Encoder

    enc = Encoder.from_pretrained(three_stages / "simcse" / "encoder")
    assert enc.set_max_length(300) == 300
    with pytest.warns(UserWarning, match="exceeds the model's 1024 positions"):
        assert enc.set_max_length(4096) == 1024
    enc.set_max_length(300)
    enc.save(tmp_path / "e")
    assert SentenceTransformer(str(tmp_path / "e")).max_seq_length == 300


def test_wiki_documents_fit_the_saved_length(smollm2):
    """The Wikipedia benchmark's documents are far inside the saved encoders' 512 tokens (never truncated)."""
    from llm2embed.evaluation.wiki import cached_wiki_benchmark

    bench = cached_wiki_benchmark()
    docs = list(bench.retrieval.corpus.values())
    longest = max(len(ids) for ids in smollm2.tokenizer(docs)["input_ids"])
    assert smollm2.max_length == 512 and longest < smollm2.max_length
