"""Tiny randomly initialised decoders, built from each architecture's config (no download)."""

from __future__ import annotations

import torch
import transformers

# architecture -> (config class, extra config kwargs, uses rotary positions)
ARCHITECTURES: dict[str, tuple[str, dict, bool]] = {
    "llama": ("LlamaConfig", {}, True),
    "mistral": ("MistralConfig", {"sliding_window": None}, True),
    "qwen2": ("Qwen2Config", {}, True),
    "qwen3": ("Qwen3Config", {"head_dim": 16}, True),
    "gemma": ("GemmaConfig", {"head_dim": 16}, True),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "sliding_window": 4}, True),
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 16, "sliding_window": 4}, True),
    "phi3": ("Phi3Config", {"pad_token_id": 0}, True),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128}, False),
}

VOCAB = 512


def tiny_config(arch: str, **overrides):
    """A 2-layer, hidden-64 config of ``arch`` (a key of ARCHITECTURES)."""
    cls_name, extra, _ = ARCHITECTURES[arch]
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if arch == "gpt2":
        kwargs = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2)
    kwargs.update(extra)
    kwargs.update(overrides)
    return getattr(transformers, cls_name)(**kwargs)


def tiny_model(arch: str, causal_lm: bool = False, seed: int = 0, attn_implementation: str = "sdpa", **overrides):
    """A tiny random model of ``arch`` (AutoModel, or AutoModelForCausalLM with ``causal_lm``)."""
    torch.manual_seed(seed)
    config = tiny_config(arch, **overrides)
    auto = transformers.AutoModelForCausalLM if causal_lm else transformers.AutoModel
    model = auto.from_config(config, attn_implementation=attn_implementation)
    return model.eval()
