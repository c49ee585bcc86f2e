"""The dual-mode model on the embedded default (real SmolLM2-135M with a random, non-zero LoRA adapter):
embed == the merged encoder, greedy generate == the plain base model, interleaving and threads change nothing;
adapter chains and errors on tiny models."""

import json
import threading

import numpy as np
import pytest
import torch

from lora_helpers import add_random_lora, save_lora_encoder
from test_integrations import QUERIES, SENTENCES

from llm2embed import Encoder
from llm2embed.dual import DualModel, adapter_chain

INSTRUCTION = "Given a question, retrieve passages that answer it:"
PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "Why is the sky blue?"}],
    "Name three fruits.",
]
NEW_TOKENS = 16


def cosines(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("dual") / "lora-encoder"
    return save_lora_encoder("smollm2-135m", path, seed=0, instruction=INSTRUCTION)


@pytest.fixture(scope="module")
def dual(lora_folder):
    return DualModel.from_pretrained(lora_folder)


@pytest.fixture(scope="module")
def plain_generator():
    from transformers import AutoModelForCausalLM

    from llm2embed import resolve_model

    return AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.float32).eval()


def plain_greedy(model, dual, messages):
    ids = dual.chat_input_ids(messages)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                             do_sample=False)
    return out[0, ids.shape[1]:].tolist()


def test_embed_matches_merged_encoder(dual, lora_folder, smollm2):
    merged = Encoder.from_pretrained(lora_folder)  # merged weights, bidirectional from config.json
    assert dual.adapters == [f"{lora_folder}/adapter"] and dual.peft_model is not None
    ours = dual.embed(SENTENCES, batch_size=16)            # padded batches of mixed lengths
    reference = merged.encode(SENTENCES, batch_size=16, normalize_embeddings=True)
    assert len(SENTENCES) == 50 and cosines(ours, reference).min() >= 0.9999
    singles = np.stack([dual.embed(s) for s in SENTENCES[:8]])   # one text at a time: no padding
    assert cosines(singles, reference[:8]).min() >= 0.9999
    # queries get the stored instruction, attended to but not pooled
    q = dual.embed(QUERIES, kind="query")
    assert cosines(q, merged.encode([[INSTRUCTION, x] for x in QUERIES])).min() >= 0.9999
    assert cosines(q, merged.encode(QUERIES)).max() < 0.9999
    # the adapter matters: switched off, embed gives the plain bidirectional base, clearly different
    with dual._adapter_off():
        base = dual.embed(SENTENCES[:10])
    assert cosines(base, smollm2.encode(SENTENCES[:10])).min() >= 0.9999
    assert cosines(base, reference[:10]).max() < 0.999


def test_greedy_generate_matches_plain_base(dual, plain_generator):
    for messages in PROMPTS:
        completion = dual.complete(messages, max_new_tokens=NEW_TOKENS, temperature=0)
        assert completion.token_ids == plain_greedy(plain_generator, dual, messages)
        assert completion.prompt_tokens == dual.chat_input_ids(messages).shape[1]
    # the base generation config is greedy for SmolLM2: the default call gives the same tokens
    assert dual.complete(PROMPTS[0], max_new_tokens=NEW_TOKENS).token_ids == \
        plain_greedy(plain_generator, dual, PROMPTS[0])
    # sanity: the adapter is really there and really off in generation: its logits differ from the base's
    ids = dual.chat_input_ids(PROMPTS[0])
    with torch.inference_mode():
        on = dual.causal_lm(input_ids=ids).logits
        with dual.peft_model.disable_adapter():
            off = dual.causal_lm(input_ids=ids).logits
        plain = plain_generator(input_ids=ids).logits
    torch.testing.assert_close(off, plain, atol=1e-4, rtol=1e-4)
    assert (on - plain).abs().max() > 1e-2


def test_interleaving_changes_neither_mode(dual):
    texts = SENTENCES[:12]
    first_embed = dual.embed(texts, batch_size=4)
    first_gen = dual.complete(PROMPTS[0], max_new_tokens=8).token_ids
    for _ in range(2):
        assert dual.complete(PROMPTS[0], max_new_tokens=8).token_ids == first_gen
        np.testing.assert_allclose(dual.embed(texts, batch_size=4), first_embed, atol=1e-6)
    # nothing is left switched: the shared config is causal, the adapter is enabled
    config = dual.causal_lm.config
    assert getattr(config, "is_causal", True) is True
    lora_layers = [m for m in dual.peft_model.modules() if hasattr(m, "disable_adapters") and hasattr(m, "lora_A")]
    assert lora_layers and not any(m.disable_adapters for m in lora_layers)


def test_concurrent_threads_give_serial_results(dual):
    jobs = [("embed", SENTENCES[i * 6:(i + 1) * 6]) for i in range(3)] + [("gen", p) for p in PROMPTS[:2]]

    def run(job):
        kind, arg = job
        if kind == "embed":
            return dual.embed(arg, batch_size=3)
        return dual.complete(arg, max_new_tokens=8).token_ids

    serial = [run(job) for job in jobs]
    results = [None] * len(jobs)
    start = threading.Barrier(len(jobs))

    def worker(i):
        start.wait()
        results[i] = run(jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for (kind, _), got, want in zip(jobs, results, serial):
        if kind == "embed":
            np.testing.assert_allclose(got, want, atol=1e-6)
        else:
            assert got == want


def test_embedded_default_without_adapter(smollm2):
    base = DualModel.from_pretrained("smollm2-135m")
    assert base.peft_model is None and base.adapters == []
    reference = smollm2.encode(SENTENCES[:16], batch_size=8, normalize_embeddings=True)
    assert cosines(base.embed(SENTENCES[:16], batch_size=8), reference).min() >= 0.9999
    assert base.generate("Say hello.", max_new_tokens=8)  # the base chats


def test_causal_prompteol_encoder_keeps_its_attention_and_template(tmp_path):
    """A PromptEOL encoder (causal, template, last token, left padding) embeds as saved, not bidirectionally."""
    folder = save_lora_encoder("smollm2-135m", tmp_path / "prompteol", seed=1, prompt_template="prompteol")
    saved = Encoder.from_pretrained(folder)
    assert saved.prompt_template == "prompteol" and not saved.bidirectional
    dual = DualModel.from_pretrained(folder)
    reference = saved.encode(SENTENCES[:20], batch_size=8, normalize_embeddings=True)
    assert cosines(dual.embed(SENTENCES[:20], batch_size=8), reference).min() >= 0.9999
    # the base spec with the template gives the training-free PromptEOL baseline
    from llm2embed.rag import load_rag_model

    base = load_rag_model("smollm2-135m:prompteol")  # what `rag` uses without a trained encoder: it answers too
    assert isinstance(base, DualModel) and base.peft_model is None
    baseline = Encoder.from_pretrained("smollm2-135m", prompt_template="prompteol")
    assert cosines(base.embed(SENTENCES[:8]), baseline.encode(SENTENCES[:8])).min() >= 0.9999


# --------------------------------------------------------------------------------------- tiny models
def test_stacked_adapter_chain_matches_merged_encoder(llama_folder, tmp_path):
    """MNTP adapter merged, then a contrastive LoRA trained on top: both stacked unmerged reproduce it."""
    mntp = add_random_lora(Encoder.from_pretrained(llama_folder), seed=1)
    mntp.model.save_pretrained(tmp_path / "mntp")
    stage = tmp_path / "simcse"
    enc = Encoder.from_pretrained(llama_folder, peft_model_name_or_path=tmp_path / "mntp", merge_peft=True)
    add_random_lora(enc, seed=2).save(stage / "encoder")
    (stage / "llm2embed_contrastive.json").write_text(json.dumps(
        {"stage": "simcse", "base_model": llama_folder, "mntp_adapter": str(tmp_path / "mntp")}))
    assert adapter_chain(stage / "encoder") == (llama_folder, [tmp_path / "mntp", stage / "encoder" / "adapter"])
    dual = DualModel.from_pretrained(stage / "encoder")
    reference = Encoder.from_pretrained(stage / "encoder").encode(QUERIES + SENTENCES[:6], normalize_embeddings=True)
    assert cosines(dual.embed(QUERIES + SENTENCES[:6]), reference).min() >= 0.9999
    # without the stage record only the last adapter is found: the check against the merged weights says so
    (stage / "llm2embed_contrastive.json").unlink()
    with pytest.raises(ValueError, match="does not reproduce the merged weights"):
        DualModel.from_pretrained(stage / "encoder")


def test_clear_errors(llama_folder, tmp_path):
    # saved without an adapter: fine when the weights are the base's, an error when an adapter was merged in
    Encoder.from_pretrained(llama_folder).save(tmp_path / "converted")
    np.testing.assert_allclose(DualModel.from_pretrained(tmp_path / "converted").embed(QUERIES),
                               Encoder.from_pretrained(tmp_path / "converted").encode(QUERIES,
                                                                                     normalize_embeddings=True),
                               atol=1e-5)
    add_random_lora(Encoder.from_pretrained(llama_folder), seed=5).save(tmp_path / "merged", merge_before_save=True)
    with pytest.raises(ValueError, match="merged weights only"):
        DualModel.from_pretrained(tmp_path / "merged")
    dual = DualModel.from_pretrained(llama_folder)
    with pytest.raises(ValueError, match="kind must be"):
        dual.embed(["a"], kind="passage")
    with pytest.raises(TypeError, match="index 1"):
        dual.embed(["a", 3])
    with pytest.raises(TypeError, match="message 0"):
        dual.generate([{"role": "user"}])
    with pytest.raises(ValueError, match="max_new_tokens"):
        dual.generate("hi", max_new_tokens=0)
