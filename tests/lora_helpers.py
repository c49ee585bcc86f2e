"""Encoders with a random (but non-zero) LoRA adapter, saved unmerged: what the dual model and RAG tests load."""

from __future__ import annotations

import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def add_random_lora(encoder, seed: int = 0, r: int = 4, std: float = 0.05):
    """Wrap the encoder's transformer in a LoRA whose B weights are random, so the adapter changes outputs."""
    from peft import LoraConfig, get_peft_model

    transformer = encoder.st_model[0]
    peft_model = get_peft_model(transformer.model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    peft_model.eval()
    transformer.model = peft_model
    return encoder


def save_lora_encoder(base: str, path, seed: int = 0, std: float = 0.05, instruction: str | None = None, **kwargs):
    """Load ``base`` as an encoder, add a random LoRA, store ``instruction``, save unmerged (adapter/ kept)."""
    from llm2embed import Encoder
    from llm2embed.integrations import set_query_instruction

    encoder = add_random_lora(Encoder.from_pretrained(base, **kwargs), seed=seed, std=std)
    if instruction:
        set_query_instruction(encoder, instruction)
    encoder.save(path)
    return str(path)


CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }} : {{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant : {% endif %}")


def tiny_chat_encoder(tmp_factory, name: str = "tiny-encoder", instruction: str | None = None,
                      positions: int = 128) -> str:
    """A tiny Llama (``positions`` long) whose tokenizer has a chat template, saved as an encoder with a random
    LoRA adapter."""
    from tiny import tiny_folder
    from transformers import AutoTokenizer

    base = tiny_folder(tmp_factory.mktemp("chat-base"), "llama", seed=3, max_position_embeddings=positions)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(base)
    return save_lora_encoder(base, tmp_factory.mktemp("chat") / name, seed=4, instruction=instruction)
