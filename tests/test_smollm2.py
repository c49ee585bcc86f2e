"""The embedded default model (SmolLM2-135M-Instruct, Llama architecture) end to end."""

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from llm2embed import LLM2Vec, probe_bidirectional


def test_embedded_default_is_bidirectional(smollm2):
    info = smollm2.info()
    assert info["attention"] == "bidirectional"
    assert (info["model_type"], info["dimension"], info["pooling_mode"]) == ("llama", 576, "mean")
    assert 130e6 < info["parameters"] < 140e6


def test_plain_text_not_chat_template(smollm2):
    """sentence-transformers would wrap text in the instruct model's chat template; we feed plain text."""
    features = smollm2.st_model.preprocess(["A girl is styling her hair."])
    assert features["input_ids"][0].tolist() == smollm2.tokenizer("A girl is styling her hair.")["input_ids"]


def test_saved_folder_loads_in_plain_sentence_transformers(smollm2, tmp_path):
    sentences = ["A man plays a guitar.", "A woman is slicing an onion.", "", "Stocks fell sharply on Monday."]
    ours = smollm2.encode(sentences)
    smollm2.save(tmp_path / "enc")
    plain = SentenceTransformer(str(tmp_path / "enc"), device="cpu")
    assert probe_bidirectional(plain[0].auto_model)
    np.testing.assert_allclose(plain.encode(sentences[:2] + sentences[3:]), np.delete(ours, 2, axis=0), atol=1e-5)


def test_llm2vec_drop_in(smollm2):
    l2v = LLM2Vec(smollm2.st_model, pooling_mode="mean")
    out = l2v.encode([["Retrieve passages about music:", "guitar lessons"], "A man plays a guitar."],
                     show_progress_bar=False)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 576) and torch.isfinite(out).all()
