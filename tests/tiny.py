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


CORPUS = (
    "a man plays a guitar on the stage . a woman slices an onion in the kitchen . the market fell on monday . "
    "music lessons for children . retrieve passages about music : guitar lessons . the cat sat on the mat ."
).split(" . ")


def tiny_tokenizer(padding_side: str = "right"):
    """A byte-level BPE tokenizer with VOCAB entries, trained in milliseconds on a toy corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", padding_side=padding_side
    )


def tiny_folder(path, arch: str = "llama", seed: int = 0, attn_implementation: str = "sdpa", **overrides) -> str:
    """Save a tiny causal LM of ``arch`` and a tokenizer to ``path`` (a transformers folder); return the path."""
    model = tiny_model(arch, causal_lm=True, seed=seed, attn_implementation=attn_implementation, **overrides)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def sdpa_supported(arch: str) -> bool:
    return arch != "gemma2"  # Gemma 2's logit soft-capping needs eager attention
