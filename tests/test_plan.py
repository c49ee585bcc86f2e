"""`llm2embed mntp CONFIG --plan`: the model on the meta device, exact parameter counts, memory terms,
the verdict for the reference Llama-3-8B config on a 24 GB GPU, sharding advice, the Hub-id path."""

import json

import pytest
import transformers

from llm2embed.cli import main
from llm2embed.training import plan as plan_module
from llm2embed.training.plan import (GIB, ModelShape, layer_activation_bytes, lora_parameter_count,
                                     masked_logits_bytes, meta_parameter_counts, parameter_count, parse_memory,
                                     plan_mntp)
from tiny import tiny_config

LLAMA3_8B = dict(hidden_size=4096, num_hidden_layers=32, intermediate_size=14336, num_attention_heads=32,
                 num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                 tie_word_embeddings=False)
# the reference config (issue 3, the LLM2Vec write-up), with the model pointed at a folder holding config.json
REFERENCE = {
    "dataset_name": "wikitext", "dataset_config_name": "wikitext-103-raw-v1",
    "per_device_train_batch_size": 1, "per_device_eval_batch_size": 1, "gradient_accumulation_steps": 16,
    "do_train": True, "do_eval": True, "max_seq_length": 512, "mask_token_type": "blank",
    "data_collator_type": "all_mask", "mlm_probability": 0.8, "overwrite_output_dir": True,
    "output_dir": "Llama-3-8B-llm2vec-MNTP-Emb", "evaluation_strategy": "steps", "eval_steps": 100,
    "save_steps": 200, "stop_after_n_steps": 1000, "lora_r": 16, "gradient_checkpointing": True,
    "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2",
}


@pytest.fixture(scope="module")
def llama3_config_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama3-8b-config")
    model = folder / "model"
    transformers.LlamaConfig(**LLAMA3_8B).save_pretrained(model)
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]  # nothing but the config
    path = folder / "mntp.json"
    path.write_text(json.dumps({"model_name_or_path": str(model), **REFERENCE}))
    return path


def test_llama3_8b_reference_config_figures_and_verdict(llama3_config_file, capsys):
    plan = plan_mntp(llama3_config_file, gpu_memory="24GB")
    shape = ModelShape(4096, 32, 14336, 32, 8, 128256, 128)
    assert plan.shape == shape
    # exact counts: the meta-device model equals the published 8.03B and the formulas
    assert plan.parameters == parameter_count(shape) == 8_030_261_248
    assert plan.trainable == lora_parameter_count(shape, 16) == 32 * 16 * (2 * 8192 + 2 * 5120 + 3 * 18432)
    assert plan.memory["weights"] == 8_030_261_248 * 2 and plan.memory["lora_state"] == plan.trainable * 16
    assert plan.masked_tokens == round(511 * 0.8)
    assert plan.memory["masked_logits"] == plan.masked_tokens * 128256 * 14
    assert plan.memory["activations"] == 32 * 512 * 4096 * 2 + layer_activation_bytes(shape, 512, 2)
    assert plan.tokens_per_step == 1 * 512 * 16
    assert 16 * GIB < plan.total < 19 * GIB and plan.fits  # 24 GB is enough, as the write-up says

    assert main(["mntp", str(llama3_config_file), "--plan", "--gpu-memory", "24GB"]) == 0
    out = capsys.readouterr().out
    for expected in ("8,030,261,248 (8.03B)", "41,943,040", "FITS in 24 GiB", "409 masked",
                     "tokens per optimizer step: 8,192", "logits at masked positions"):
        assert expected in out, expected
    assert not (llama3_config_file.parent / "Llama-3-8B-llm2vec-MNTP-Emb").exists()  # nothing trained


def test_verdict_advice_and_sharding(llama3_config_file, capsys):
    # no checkpointing and batch 4: 24 GB is far from enough; the advice names what brings it back
    big = plan_mntp(llama3_config_file, {"gradient_checkpointing": False, "per_device_train_batch_size": 4},
                    gpu_memory="24GB")
    assert not big.fits and big.total > 30 * GIB
    assert any(a.startswith("set gradient_checkpointing: true") for a in big.advice)
    # 16 GB: the bf16 weights alone (14.96 GiB) leave no room; sharding over 2 GPUs does
    small = plan_mntp(llama3_config_file, gpu_memory="16GB")
    assert not small.fits and any("shard over 2 GPUs" in a for a in small.advice)
    sharded = plan_mntp(llama3_config_file, gpu_memory="16GB", gpus=2)
    assert sharded.fits and sharded.memory["weights"] == small.memory["weights"] // 2
    assert sharded.memory["gathered"] > 0 and sharded.tokens_per_step == 2 * small.tokens_per_step
    assert main(["mntp", str(llama3_config_file), "--plan", "--gpu-memory", "16GB", "--gpus", "2"]) == 0
    assert "FITS in 16 GiB" in capsys.readouterr().out
    assert main(["mntp", str(llama3_config_file), "--plan", "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory: cannot read 'lots'" in capsys.readouterr().err


def test_hub_id_fetches_only_the_config(monkeypatch, tmp_path):
    calls = []

    def fake_config(name, **kwargs):
        calls.append(name)
        return transformers.LlamaConfig(**LLAMA3_8B)

    def no_weights(*args, **kwargs):
        raise AssertionError("--plan must not load weights")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", fake_config)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    plan = plan_mntp({"model_name_or_path": "meta-llama/Meta-Llama-3-8B", **REFERENCE}, gpu_memory="24GB")
    assert calls == ["meta-llama/Meta-Llama-3-8B"] and plan.parameters == 8_030_261_248
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no config.json"):
        plan_mntp({"model_name_or_path": str(tmp_path / "empty"), **REFERENCE})


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma", "gpt2"])
def test_meta_counts_equal_a_real_model(arch):
    from llm2embed.training.lora import add_lora

    config = tiny_config(arch)
    model = transformers.AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    peft = add_lora(model.get_decoder(), r=4)
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert meta_parameter_counts(config, lora_r=4) == (total, trainable)
    if arch in ("llama", "qwen2"):  # the Llama-style formulas (Qwen2's q/k/v biases are LoRA-free extras)
        shape = ModelShape.from_config(config)
        assert lora_parameter_count(shape, 4) == trainable
        assert parameter_count(shape) == total - (0 if arch == "llama" else 2 * (64 + 2 * shape.kv_dim))


def test_memory_terms_are_small_pure_functions():
    shape = ModelShape(4096, 32, 14336, 32, 8, 128256, 128)
    # linear in tokens; over fp32 weights there are no float32 copies of the LoRA inputs
    assert layer_activation_bytes(shape, 1024, 2) == 2 * layer_activation_bytes(shape, 512, 2)
    per_token_bf16 = layer_activation_bytes(shape, 1, 2)
    per_token_fp32 = layer_activation_bytes(shape, 1, 4)
    compute = 5 * 4096 + 2 * 1024 + 4 * 14336
    assert per_token_bf16 == compute * 2 + 2 * 4096 * 4 + (6 * 4096 + 14336) * 5
    assert per_token_fp32 == compute * 4 + 2 * 4096 * 4 + (6 * 4096 + 14336)
    assert masked_logits_bytes(10, 100, 4) == 10 * 100 * 12
    assert parse_memory("24GB") == parse_memory("24GiB") == parse_memory("24g") == 24 * GIB
    assert parse_memory("16000MB") == 16000 * 1024 ** 2 and parse_memory(1000) == 1000
    with pytest.raises(ValueError, match="cannot read"):
        parse_memory("24 gigs")
    assert plan_module.masked_token_count(2, 512, 0.15) == round(2 * 511 * 0.15)
