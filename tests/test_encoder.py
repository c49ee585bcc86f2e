"""Encoder API on tiny models: pooling, instructions, order, saving, adapters, bad input, LLM2Vec facade."""

import json
import warnings

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from tiny import tiny_folder

from llm2embed import LLM2Vec, Encoder, format_instruction
from llm2embed.encoder import ADAPTER_DIR

TEXTS = ["a man plays a guitar on the stage", "music", "the cat sat on the mat in the kitchen", "onion market"]
INSTRUCTION = "retrieve passages about music :"


def hidden_states(enc, text: str) -> torch.Tensor:
    """Token outputs of one unpadded input, straight from the transformers model."""
    ids = enc.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        return enc.model(**ids).last_hidden_state[0]


def prompt_length(enc, instruction: str) -> int:
    return len(enc.tokenizer(format_instruction(instruction))["input_ids"])


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "eos_token", "last_token", "bos_token"])
def test_pooling_modes_match_manual_computation(llama_folder, mode, side):
    enc = Encoder.from_pretrained(llama_folder, pooling_mode=mode, padding_side=side)
    got = enc.encode(TEXTS + [[INSTRUCTION, "guitar lessons"]], convert_to_tensor=True)
    for i, text in enumerate(TEXTS + ["guitar lessons"]):
        instruction = INSTRUCTION if i == len(TEXTS) else ""
        h = hidden_states(enc, format_instruction(instruction) + text)
        start = prompt_length(enc, instruction) if instruction else 0
        tokens = h[start:]
        if mode == "mean":
            want = tokens.mean(0)
        elif mode == "weighted_mean":
            w = torch.arange(start + 1, h.shape[0] + 1, dtype=torch.float32).unsqueeze(1)
            want = (tokens * w).sum(0) / w.sum()
        elif mode in ("eos_token", "last_token"):
            want = h[-1]
        else:
            want = h[start]
        assert torch.allclose(got[i], want, atol=1e-5), (mode, side, i)


def test_concatenated_pooling_is_each_mode_side_by_side_and_survives_saving(llama_folder, tmp_path):
    both = Encoder.from_pretrained(llama_folder, pooling_mode="last_token+mean", padding_side="left")
    last = Encoder.from_pretrained(llama_folder, pooling_mode="last_token", padding_side="left")
    mean = Encoder.from_pretrained(llama_folder, pooling_mode="mean", padding_side="left")
    inputs = TEXTS + [[INSTRUCTION, "guitar lessons"]]
    got = both.encode(inputs)
    assert both.embedding_dimension == 2 * last.embedding_dimension == got.shape[1]
    np.testing.assert_allclose(got, np.concatenate([last.encode(inputs), mean.encode(inputs)], 1), atol=1e-5)
    both.save(tmp_path / "both")
    plain = SentenceTransformer(str(tmp_path / "both"), device="cpu")  # no llm2embed needed to reproduce it
    np.testing.assert_allclose(plain.encode(TEXTS), got[:len(TEXTS)], atol=1e-5)
    again = Encoder.from_pretrained(tmp_path / "both")
    assert again.pooling_mode == "last_token+mean" and again.embedding_dimension == got.shape[1]
    # a saved encoder given a single mode again gets the single-size output
    assert Encoder.from_pretrained(tmp_path / "both", pooling_mode="mean").embedding_dimension == got.shape[1] // 2
    with pytest.raises(ValueError, match="unknown pooling mode 'median' in 'last_token\\+median'"):
        Encoder.from_pretrained(llama_folder, pooling_mode="last_token+median")


def test_eos_token_pooling_appends_eos_and_survives_saving(llama_folder, tmp_path):
    enc = Encoder.from_pretrained(llama_folder, pooling_mode="eos_token")
    assert enc.tokenizer("music")["input_ids"][-1] == enc.tokenizer.eos_token_id
    assert Encoder.from_pretrained(llama_folder, pooling_mode="last_token").tokenizer("music")["input_ids"][-1] \
        != enc.tokenizer.eos_token_id
    enc.save(tmp_path / "eos")
    plain = SentenceTransformer(str(tmp_path / "eos"), device="cpu")
    assert plain.tokenizer("music")["input_ids"][-1] == enc.tokenizer.eos_token_id
    np.testing.assert_allclose(plain.encode(TEXTS), enc.encode(TEXTS), atol=1e-5)


def test_instruction_is_attended_but_not_pooled(llama_folder):
    enc = Encoder.from_pretrained(llama_folder)
    with_instr = enc.encode([[INSTRUCTION, "guitar lessons"]])[0]
    plain = enc.encode(["guitar lessons"])[0]
    assert not np.allclose(with_instr, plain, atol=1e-4)  # bidirectional: the instruction changes text tokens
    h = hidden_states(enc, format_instruction(INSTRUCTION) + "guitar lessons")
    n = prompt_length(enc, INSTRUCTION)
    assert n > 0 and h.shape[0] > n
    np.testing.assert_allclose(with_instr, h[n:].mean(0).numpy(), atol=1e-5)
    pooled_all = Encoder.from_pretrained(llama_folder, skip_instruction=False).encode([[INSTRUCTION, "guitar lessons"]])
    np.testing.assert_allclose(pooled_all[0], h.mean(0).numpy(), atol=1e-5)


def test_prompt_tokens_are_a_prefix(llama_folder):
    """The instruction prompt tokenizes the same alone and in front of the text (exact exclusion)."""
    enc = Encoder.from_pretrained(llama_folder)
    prompt = enc.tokenizer(format_instruction(INSTRUCTION))["input_ids"]
    full = enc.tokenizer(format_instruction(INSTRUCTION) + "guitar lessons")["input_ids"]
    assert full[: len(prompt)] == prompt


def test_results_in_input_order_with_mixed_instructions(llama_folder):
    enc = Encoder.from_pretrained(llama_folder)
    inputs = ["music", ["query :", "guitar"], "onion market", ["passage :", "guitar"], ["query :", "onion"]]
    together = enc.encode(inputs, batch_size=2)
    for i, item in enumerate(inputs):
        np.testing.assert_allclose(together[i], enc.encode([item])[0], atol=1e-5)
    assert enc.encode("music").shape == (enc.embedding_dimension,)


def test_bad_input(llama_folder):
    enc = Encoder.from_pretrained(llama_folder)
    assert enc.encode([]).shape == (0, enc.embedding_dimension)
    assert enc.encode([], convert_to_tensor=True).shape == (0, enc.embedding_dimension)
    empty = enc.encode(["", "   ", ["query :", ""]])
    assert np.isfinite(empty).all()
    with pytest.raises(TypeError, match="index 2"):
        enc.encode(["a", "b", None])
    with pytest.raises(TypeError, match="index 1"):
        enc.encode(["a", 5])
    with pytest.raises(TypeError, match="index 0"):
        enc.encode([["only one"]])
    with pytest.raises(ValueError, match="unknown pooling mode 'median'.*mean"):
        Encoder.from_pretrained(llama_folder, pooling_mode="median")
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        Encoder.from_pretrained("./does-not-exist")


def test_truncation_warns_once(llama_folder):
    enc = Encoder.from_pretrained(llama_folder, max_length=8)
    long = " ".join(["guitar"] * 50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = enc.encode([long, long + " onion"])
        enc.encode([long])
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)  # the words past 8 tokens are dropped
    assert np.isfinite(a).all()


def test_save_and_reload_identical(llama_folder, tmp_path):
    enc = Encoder.from_pretrained(llama_folder, pooling_mode="weighted_mean", max_length=64)
    inputs = TEXTS + [[INSTRUCTION, "guitar lessons"]]
    before = enc.encode(inputs)
    enc.save(tmp_path / "enc")
    files = {p.name for p in (tmp_path / "enc").iterdir()}
    assert {"modules.json", "config.json", "model.safetensors", "tokenizer.json", "llm2embed.json"} <= files
    again = Encoder.from_pretrained(tmp_path / "enc")
    assert (again.pooling_mode, again.max_length, again.bidirectional) == ("weighted_mean", 64, True)
    np.testing.assert_array_equal(again.encode(inputs), before)
    # saving over an existing folder replaces it atomically
    again.save(tmp_path / "enc")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".enc")]


def make_adapter(folder, out, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(folder)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
    peft_model.save_pretrained(out)
    return str(out)


def test_adapter_merge_and_save(llama_folder, tmp_path):
    adapter = make_adapter(llama_folder, tmp_path / "adapter")
    base = Encoder.from_pretrained(llama_folder).encode(TEXTS)
    unmerged = Encoder.from_pretrained(llama_folder, peft_model_name_or_path=adapter)
    merged = Encoder.from_pretrained(llama_folder, peft_model_name_or_path=adapter, merge_peft=True)
    a, b = unmerged.encode(TEXTS), merged.encode(TEXTS)
    assert not np.allclose(a, base, atol=1e-3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert merged.probe() and unmerged.probe()

    unmerged.save(tmp_path / "kept")
    adapter_config = json.loads((tmp_path / "kept" / ADAPTER_DIR / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == llama_folder  # the user's spec, never a cache path
    weights = json.loads((tmp_path / "kept/config.json").read_text())
    assert weights["is_causal"] is False
    np.testing.assert_allclose(Encoder.from_pretrained(tmp_path / "kept").encode(TEXTS), a, atol=1e-5)
    np.testing.assert_allclose(unmerged.encode(TEXTS), a, atol=1e-6)  # saving left the encoder as it was

    merged.save(tmp_path / "merged", merge_before_save=True)
    assert not (tmp_path / "merged" / ADAPTER_DIR).exists()
    np.testing.assert_allclose(Encoder.from_pretrained(tmp_path / "merged").encode(TEXTS), a, atol=1e-5)


def test_pickle_weights_need_opt_in(tmp_path):
    folder = tiny_folder(tmp_path / "bin", "llama")
    from transformers import AutoModelForCausalLM

    torch.save(AutoModelForCausalLM.from_pretrained(folder).state_dict(), tmp_path / "bin/pytorch_model.bin")
    (tmp_path / "bin/model.safetensors").unlink()
    with pytest.raises(Exception, match="safetensors"):
        Encoder.from_pretrained(folder)
    assert Encoder.from_pretrained(folder, allow_pickle=True).encode(["music"]).shape[0] == 1


def test_llm2vec_facade(llama_folder):
    l2v = LLM2Vec.from_pretrained(llama_folder, pooling_mode="mean", max_length=64, attention_dropout=0.1,
                                  doc_max_length=400)
    out = l2v.encode(["music", ["query :", "guitar"]])
    assert isinstance(out, torch.Tensor) and out.shape == (2, l2v.embedding_dimension)
    assert l2v.model.config.attention_dropout == 0.1
    assert isinstance(l2v.encode(["music"], convert_to_numpy=True), np.ndarray)
    with pytest.raises(TypeError, match="not_an_option"):
        LLM2Vec.from_pretrained(llama_folder, not_an_option=3)


def test_causal_mode_on_request(llama_folder):
    enc = Encoder.from_pretrained(llama_folder, enable_bidirectional=False)
    assert not enc.probe() and not enc.bidirectional
    h = hidden_states(enc, "guitar lessons")
    np.testing.assert_allclose(enc.encode(["guitar lessons"])[0], h.mean(0).numpy(), atol=1e-5)
