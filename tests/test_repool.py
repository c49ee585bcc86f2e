"""Re-pooling a saved encoder: same weights, another pooling, plain sentence-transformers reproduces it."""

import json
import os

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from llm2embed import Encoder
from llm2embed import repool as repool_module
from llm2embed.repool import pooled_folder, repool

TEXTS = ["a man plays a guitar on the stage", "music", "the cat sat on the mat in the kitchen"]


def test_repool_writes_a_sibling_with_the_new_pooling_and_leaves_the_source(llama_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(repool_module, "_LINK_ABOVE", 0)  # link every file: the tiny model's weights are small
    source = Encoder.from_pretrained(llama_folder, pooling_mode="last_token").save(tmp_path / "simcse/encoder")
    before = SentenceTransformer(str(source), device="cpu").encode(TEXTS)
    target = repool(source, "last_token+mean")
    assert target == pooled_folder(source, "last_token+mean") == tmp_path / "simcse/encoder_last_token+mean"
    mean = Encoder.from_pretrained(llama_folder, pooling_mode="mean").encode(TEXTS)
    plain = SentenceTransformer(str(target), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(plain, np.concatenate([before, mean], 1), atol=1e-5)
    meta = json.loads((target / "llm2embed.json").read_text())
    assert meta["pooling_mode"] == "last_token+mean" and meta["trained_pooling_mode"] == "last_token"
    assert Encoder.from_pretrained(target).pooling_mode == "last_token+mean"
    # the weights are shared, the configs that changed are not, and the source still pools as it did
    assert os.stat(target / "model.safetensors").st_ino == os.stat(source / "model.safetensors").st_ino
    assert json.loads((source / "llm2embed.json").read_text())["pooling_mode"] == "last_token"
    np.testing.assert_allclose(SentenceTransformer(str(source), device="cpu").encode(TEXTS), before, atol=1e-6)
    # already there: kept; the source's own pooling: the source itself
    stamp = (target / "llm2embed.json").stat().st_mtime_ns
    assert repool(source, "last_token+mean") == target and (target / "llm2embed.json").stat().st_mtime_ns == stamp
    assert repool(source, "last_token") == source


def test_repool_errors_name_the_problem_and_write_nothing(llama_folder, tmp_path):
    source = Encoder.from_pretrained(llama_folder).save(tmp_path / "enc")
    with pytest.raises(ValueError, match="unknown pooling mode 'median' in 'mean\\+median'"):
        repool(source, "mean+median")
    with pytest.raises(FileNotFoundError, match="not-an-encoder.*not a saved llm2embed encoder"):
        repool(tmp_path / "not-an-encoder", "last_token")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
