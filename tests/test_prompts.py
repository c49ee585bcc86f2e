"""Training-free baselines as model specs: PromptEOL (template + causal + last token), reproduced in plain ST."""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from llm2embed import Encoder
from llm2embed.evaluation.models import load_model, parse_model_spec
from llm2embed.prompts import render_template

TEXTS = ["a man plays a guitar on the stage", "music", "the cat sat on the mat and the market fell on monday"]


def test_prompteol_spec_suffix_takes_any_base():
    spec = parse_model_spec("smollm2-135m:prompteol")
    assert (spec.source, spec.bidirectional, spec.prompt_template) == ("smollm2-135m", False, "prompteol")
    assert parse_model_spec("smollm2-135m:prompteol:bfloat16").dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown prompt template"):
        render_template("nope", "x")


def test_template_wraps_every_text_and_the_folder_reproduces_it(llama_folder, tmp_path):
    enc = load_model(f"{llama_folder}:prompteol")
    assert (enc.pooling_mode, enc.bidirectional, enc.tokenizer.padding_side) == ("last_token", False, "left")
    assert enc.info()["attention"] == "causal"
    ids = enc.st_model[0].preprocess(["music"])["input_ids"][0].tolist()
    expected = enc.tokenizer('This sentence : "music" means in one word:"', add_special_tokens=False)["input_ids"]
    assert ids == expected

    # the embedding is the last template token's hidden state of the causal model, computed by hand
    import torch

    text = render_template("prompteol", TEXTS[2])
    batch = enc.tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        hidden = enc.model(**batch).last_hidden_state[0, -1].numpy()
    np.testing.assert_allclose(enc.encode([TEXTS[2]])[0], hidden, atol=1e-5)

    enc.save(tmp_path / "peol")
    plain = SentenceTransformer(str(tmp_path / "peol"))
    a, b = enc.encode(TEXTS), plain.encode(TEXTS)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.9999
    again = Encoder.from_pretrained(tmp_path / "peol")
    assert again.prompt_template == "prompteol" and not again.bidirectional
    np.testing.assert_allclose(again.encode(TEXTS), a, atol=1e-5)


def test_instruction_goes_before_the_template():
    assert render_template("prompteol", "guitar", "Retrieve music") == \
        'Retrieve musicThis sentence : "guitar" means in one word:"'
