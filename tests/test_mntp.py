"""MNTP: the i-1 shift, masking statistics, loss equivalence, training, resume, the seed config."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from tiny import tiny_folder, tiny_model, tiny_tokenizer

from llm2embed import Encoder
from llm2embed.cli import main
from llm2embed.training.config import (
    ConfigError,
    DataArguments,
    MNTPArguments,
    ModelArguments,
    parse_config,
    parse_overrides,
)
from llm2embed.training.mntp import (
    MNTPCollator,
    load_mntp_model,
    mask_token_id_for,
    mask_tokens,
    maskable_positions,
    mntp_loss,
    train_mntp,
)

CORPUS_LINE = "a man plays a guitar on the stage . the woman slices an onion in the kitchen . music lessons"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join([CORPUS_LINE] * 120))
    return str(path)


def test_target_at_i_is_predicted_from_i_minus_1():
    """Hand-built: hidden state j is the one-hot of token j+1, so the shifted loss is near zero."""
    vocab = 6
    head = torch.nn.Linear(vocab, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(vocab) * 50)
    tokens = torch.tensor([[1, 4, 2, 5, 3]])
    hidden = torch.zeros(1, 5, vocab)
    for j in range(4):
        hidden[0, j, tokens[0, j + 1]] = 1.0  # the output at j "knows" the next token
    labels = torch.full_like(tokens, -100)
    labels[0, [2, 4]] = tokens[0, [2, 4]]
    loss, correct, count = mntp_loss(hidden, labels, head)
    assert count == 2 and correct == 2 and loss < 1e-6
    # reading the target from position i instead of i-1 would be wrong:
    unshifted = torch.nn.functional.cross_entropy(head(hidden[0, [2, 4]]), tokens[0, [2, 4]])
    assert unshifted > 10
    # a label at position 0 has nothing before it and is never scored
    labels0 = torch.full_like(tokens, -100)
    labels0[0, 0] = 1
    assert mntp_loss(hidden, labels0, head)[2] == 0


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2", "qwen3"])
def test_loss_equals_full_vocabulary_computation(arch, tmp_path):
    """Projecting only the labelled positions gives the loss of the full causal-LM computation."""
    impl = "eager" if arch == "gemma2" else "sdpa"
    model = tiny_model(arch, causal_lm=True, attn_implementation=impl, **({"final_logit_softcapping": 5.0}
                                                                         if arch == "gemma2" else {}))
    ids = torch.randint(3, 500, (3, 12), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    attention[2, 8:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, [3, 5, 9]] = ids[:, [3, 5, 9]]
    labels[2, 9] = -100  # padding is never a target
    full = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attention).last_hidden_state
    ours, _, count = mntp_loss(hidden, labels, model.get_output_embeddings(), model.config)
    assert count == 8
    assert torch.allclose(ours, full, atol=1e-5), (ours, full)


def test_masking_rates_default_collator():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (200, 500), generator=gen)
    allowed = torch.ones_like(ids, dtype=torch.bool)
    allowed[:, 0] = False
    masked, labels = mask_tokens(ids, allowed, mask_token_id=5, probability=0.2, strategy="default",
                                 vocab_size=1000, generator=gen)
    chosen = labels != -100
    n, p = allowed.sum().item(), 0.2
    assert abs(chosen.sum().item() - n * p) < 4 * math.sqrt(n * p * (1 - p))
    k = chosen.sum().item()
    as_mask = (masked[chosen] == 5).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 4 * math.sqrt(0.16 / k)
    assert abs(kept - 0.1) < 4 * math.sqrt(0.09 / k) + 0.001  # random replacements rarely hit the original
    assert (masked[~chosen] == ids[~chosen]).all()
    assert (labels[chosen] == ids[chosen]).all()


def test_masking_rates_all_mask_and_never_special_or_padding():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(10, 1000, (100, 300), generator=gen)
    attention = torch.ones_like(ids)
    attention[:, 250:] = 0
    special = torch.zeros_like(ids)
    special[:, [0, 1, 100]] = 1
    allowed = maskable_positions(attention, special)
    masked, labels = mask_tokens(ids, allowed, 7, 0.8, "all_mask", generator=gen)
    chosen = labels != -100
    assert (masked[chosen] == 7).all()
    frac = chosen.sum().item() / allowed.sum().item()
    assert abs(frac - 0.8) < 0.01
    assert not chosen[:, [0, 1, 100]].any() and not chosen[:, 250:].any()


def test_collator_pads_and_premasks_deterministically(tmp_path):
    from datasets import Dataset

    collator = MNTPCollator(pad_token_id=0, mask_token_id=3, vocab_size=50, mlm_probability=0.5)
    examples = [{"input_ids": [5, 6, 7, 8], "special_tokens_mask": [1, 0, 0, 0]},
                {"input_ids": [9, 10], "special_tokens_mask": [0, 0]}]
    batch = collator(examples)
    assert batch["input_ids"].shape == (2, 4) and batch["attention_mask"][1].tolist() == [1, 1, 0, 0]
    assert (batch["labels"][1, 2:] == -100).all() and batch["labels"][0, 0] == -100
    ds = Dataset.from_list([{"input_ids": list(range(10, 40)), "special_tokens_mask": [0] * 30}] * 4)
    a, b = collator.premask(ds, seed=3), collator.premask(ds, seed=3)
    assert a["labels"] == b["labels"] and any(x != -100 for x in a["labels"][0])


def test_mask_token_types(tmp_path):
    tok = tiny_tokenizer()
    assert mask_token_id_for(tok, "eos") == (tok.eos_token_id, False)
    assert mask_token_id_for(tok, "pad") == (tok.pad_token_id, False)
    blank, added = mask_token_id_for(tok, "blank")
    assert tok.convert_ids_to_tokens(blank) == "_" and not added
    mask_id, added = mask_token_id_for(tiny_tokenizer(), "mask")
    assert added and mask_id == len(tiny_tokenizer())
    with pytest.raises(ValueError, match="mask_token_type must be one of"):
        mask_token_id_for(tok, "hash")


def test_lora_on_every_linear_projection_of_any_architecture(tmp_path):
    for arch in ["llama", "gpt2", "phi3"]:
        folder = tiny_folder(tmp_path / arch, arch)
        peft_decoder, _, _, _ = load_mntp_model(ModelArguments(model_name_or_path=folder), MNTPArguments(lora_r=4))
        targets = {t.split(".")[-1] for t in peft_decoder.peft_config["default"].target_modules}
        linear_names = {name.split(".")[-1] for name, m in peft_decoder.get_base_model().named_modules()
                        if type(m).__name__ in ("Linear", "Conv1D") and "lora" not in name}
        assert linear_names and linear_names <= targets | {"base_layer"}, (arch, targets, linear_names)
        assert peft_decoder.peft_config["default"].lora_alpha == 8  # 2 * r
        assert peft_decoder.get_base_model().config.is_causal is False


def tiny_config(folder, corpus, out, **extra):
    config = {"model_name_or_path": folder, "train_file": corpus, "output_dir": str(out), "max_seq_length": 24,
              "per_device_train_batch_size": 4, "learning_rate": 2e-3, "mlm_probability": 0.3, "lora_r": 8,
              "stop_after_n_steps": 30, "max_steps": 30, "save_steps": 5, "logging_steps": 5, "use_cpu": True,
              "disable_tqdm": True, "seed": 0, "validation_split_percentage": 10}
    config.update(extra)
    return config


def test_loss_goes_down(llama_folder, corpus, tmp_path):
    metrics = train_mntp(tiny_config(llama_folder, corpus, tmp_path / "out", do_eval=True, eval_on_start=True,
                                     eval_strategy="steps", eval_steps=30, save_strategy="no"))
    history = json.loads((tmp_path / "out/llm2embed_mntp.json").read_text())
    assert history["global_step"] == 30
    first_eval = history["first_eval_loss"]
    assert metrics["eval_loss"] < first_eval - 0.3, (first_eval, metrics["eval_loss"])
    assert 0.0 < metrics["eval_accuracy"] <= 1.0


def test_bfloat16_autocast_training(llama_folder, corpus, tmp_path):
    """``bf16: true`` on CPU (autocast, fp32 master weights) trains the fused-dropout LoRA: eval loss drops."""
    metrics = train_mntp(tiny_config(llama_folder, corpus, tmp_path / "out", bf16=True, do_eval=True,
                                     eval_on_start=True, eval_strategy="steps", eval_steps=30, save_strategy="no"))
    history = json.loads((tmp_path / "out/llm2embed_mntp.json").read_text())
    assert history["global_step"] == 30
    assert metrics["eval_loss"] < history["first_eval_loss"] - 0.3, (history["first_eval_loss"], metrics["eval_loss"])


class Crash(Exception):
    pass


def test_resume_after_interruption(llama_folder, corpus, tmp_path):
    from transformers import TrainerCallback

    class CrashAt7(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 7:
                raise Crash()

    config = tiny_config(llama_folder, corpus, tmp_path / "run", stop_after_n_steps=10, max_steps=10)
    with pytest.raises(Crash):
        train_mntp(config, callbacks=[CrashAt7()])
    assert (tmp_path / "run/checkpoint-5").is_dir() and not (tmp_path / "run/llm2embed_mntp.json").exists()
    steps_run = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)

    train_mntp(config, callbacks=[Count()])  # the same command again
    assert steps_run == [6, 7, 8, 9, 10]  # continued from checkpoint-5, did not start over
    resumed = json.loads((tmp_path / "run/llm2embed_mntp.json").read_text())
    assert resumed["global_step"] == 10

    from safetensors.torch import load_file

    final = load_file(tmp_path / "run/adapter_model.safetensors")
    mid = load_file(tmp_path / "run/checkpoint-5/adapter_model.safetensors")
    assert any(not torch.equal(final[k], mid[k]) for k in final)  # it trained on from the checkpoint


def test_output_loads_as_encoder_and_merges(llama_folder, corpus, tmp_path):
    out = tmp_path / "mntp"
    train_mntp(tiny_config(llama_folder, corpus, out, stop_after_n_steps=5, max_steps=5, merge=True,
                           save_strategy="no"))
    texts = ["a man plays a guitar", "music lessons"]
    base = Encoder.from_pretrained(llama_folder).encode(texts)
    adapted = Encoder.from_pretrained(llama_folder, peft_model_name_or_path=out).encode(texts)
    assert not np.allclose(base, adapted, atol=1e-4)
    merged = Encoder.from_pretrained(out / "merged").encode(texts)
    np.testing.assert_allclose(merged, adapted, atol=1e-4)
    assert main(["convert", llama_folder, str(tmp_path / "enc"), "--adapter", str(out)]) == 0
    np.testing.assert_allclose(Encoder.from_pretrained(tmp_path / "enc").encode(texts), adapted, atol=1e-5)


def test_config_keys_aliases_and_errors(tmp_path):
    classes = [ModelArguments, DataArguments, MNTPArguments]
    with pytest.raises(ConfigError, match="unknown config key 'lora_rank'; did you mean 'lora_r'"):
        parse_config({"output_dir": "x", "lora_rank": 4}, classes)
    with pytest.raises(ConfigError, match="output_dir"):
        parse_config({"lora_r": 4}, classes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = parse_config({"output_dir": str(tmp_path), "evaluation_strategy": "steps", "eval_steps": 3,
                               "overwrite_output_dir": True}, classes)
    messages = " ".join(str(w.message) for w in caught)
    assert "eval_strategy" in messages and "overwrite_output_dir" in messages and "--fresh" in messages
    assert parsed.training.eval_strategy == "steps"
    parsed = parse_config({"output_dir": str(tmp_path), "group_by_length": True}, classes)  # transformers 4 key
    assert parsed.training.train_sampling_strategy == "group_by_length"
    (tmp_path / "c.yaml").write_text("output_dir: out\nlora_r: 4\nmlm_probability: 0.3\n")
    parsed = parse_config(str(tmp_path / "c.yaml"), classes, overrides=parse_overrides(
        ["--lora_r", "32", "--learning_rate=1e-4", "--gradient_checkpointing", "--max_train_samples", "none"],
        classes))
    assert parsed.mntp.lora_r == 32 and parsed.training.learning_rate == 1e-4
    assert parsed.training.gradient_checkpointing is True and parsed.data.mlm_probability == 0.3
    with pytest.raises(ConfigError, match="--lora_r expects int"):
        parse_overrides(["--lora_r", "big"], classes)


def test_seed_config_runs_with_the_embedded_default(tmp_path, capsys):
    """The tutorial config, unchanged except model/data (and sizes lowered to stay fast), 2 steps."""
    texts = tmp_path / "wiki.txt"
    from llm2embed.training.corpora import wiki_train_texts

    texts.write_text("\n".join(wiki_train_texts()[:60]))
    seed = {"model_name_or_path": "smollm2-135m", "dataset_name": "wikitext",
            "dataset_config_name": "wikitext-103-raw-v1", "train_file": str(texts),
            "per_device_train_batch_size": 1, "per_device_eval_batch_size": 1, "gradient_accumulation_steps": 16,
            "do_train": True, "do_eval": True, "max_seq_length": 512, "mask_token_type": "blank",
            "data_collator_type": "all_mask", "mlm_probability": 0.8, "overwrite_output_dir": True,
            "output_dir": str(tmp_path / "Llama-3-8B-llm2vec-MNTP-Emb"), "evaluation_strategy": "steps",
            "eval_steps": 100, "save_steps": 200, "stop_after_n_steps": 1000, "lora_r": 16,
            "gradient_checkpointing": True, "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2"}
    config = tmp_path / "mntp_config.json"
    config.write_text(json.dumps(seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["mntp", str(config), "--stop_after_n_steps", "2", "--max_seq_length", "64",
                     "--gradient_accumulation_steps", "2", "--max_eval_samples", "4", "--disable_tqdm", "true"])
    assert code == 0
    assert any("flash_attention_2" in str(w.message) and "sdpa" in str(w.message) for w in caught)
    out = tmp_path / "Llama-3-8B-llm2vec-MNTP-Emb"
    meta = json.loads((out / "llm2embed_mntp.json").read_text())
    assert meta["global_step"] == 2 and math.isfinite(meta["metrics"]["eval_loss"])
    enc = Encoder.from_pretrained("smollm2-135m", peft_model_name_or_path=out)
    assert enc.probe() and np.isfinite(enc.encode(["A man plays a guitar."])).all()
    assert "MNTP done" in capsys.readouterr().out
