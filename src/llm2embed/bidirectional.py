"""Switch a decoder between causal and bidirectional attention, and prove which one it runs.

transformers (>= 5.2) builds every attention mask from ``config.is_causal``: when it is ``False``,
``create_causal_mask`` returns a bidirectional (padding-only) mask and the SDPA/flash kernels receive
``is_causal=False``. The flag must sit on the *loaded* config object (and on the text sub-config of
multimodal configs such as Gemma 3): passing it as a loading kwarg is silently dropped, while a
``config.json`` that contains ``"is_causal": false`` keeps it. So we set the attribute after loading,
and saved models carry it in their ``config.json``.

Because a future release could silently route one architecture around the flag, the switch is always
verified with :func:`probe_bidirectional`, a live forward pass: does the output at the first token
change when only the last token changes?

Example::

    from transformers import AutoModel
    from llm2embed import enable_bidirectional, probe_bidirectional

    model = AutoModel.from_pretrained("HuggingFaceTB/SmolLM2-135M")
    enable_bidirectional(model)          # raises UnsupportedArchitectureError if it does not take
    assert probe_bidirectional(model)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = [
    "UnsupportedArchitectureError",
    "architecture_name",
    "disable_bidirectional",
    "enable_bidirectional",
    "is_bidirectional_config",
    "probe_bidirectional",
    "set_causal",
    "unwrap_model",
]


class UnsupportedArchitectureError(RuntimeError):
    """The model's attention cannot be switched to bidirectional through ``config.is_causal``."""


def unwrap_model(model) -> torch.nn.Module:
    """The Hugging Face ``PreTrainedModel`` inside an Encoder, SentenceTransformer, PEFT model or module.

    >>> unwrap_model(SentenceTransformer("out/my-encoder"))  # doctest: +SKIP
    LlamaModel(...)
    """
    inner = getattr(model, "st_model", None)  # llm2embed.Encoder
    if inner is not None:
        model = inner
    if hasattr(model, "_first_module"):  # SentenceTransformer
        model = model._first_module()
    if hasattr(model, "auto_model"):  # sentence-transformers Transformer module
        model = model.auto_model
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    if not hasattr(model, "config"):
        raise TypeError(f"expected a transformers model, a SentenceTransformer or an Encoder, got {type(model)!r}")
    return model


def architecture_name(model) -> str:
    """The class of the transformers model, e.g. ``"LlamaModel"``."""
    model = unwrap_model(model)
    return type(model).__name__


def _configs(config) -> Iterator:
    """The config and every nested sub-config (e.g. Gemma 3's ``text_config``)."""
    seen: set[int] = set()
    stack = [config]
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        yield cfg
        for value in vars(cfg).values():
            if hasattr(value, "to_dict") and hasattr(value, "model_type"):
                stack.append(value)


def set_causal(model, causal: bool) -> None:
    """Set ``is_causal`` on the model's config and all its sub-configs (no verification)."""
    for cfg in _configs(unwrap_model(model).config):
        cfg.is_causal = bool(causal)


def is_bidirectional_config(config) -> bool:
    """Whether a config asks for bidirectional attention (``is_causal`` is ``False`` on it)."""
    return getattr(config, "is_causal", True) is False


def enable_bidirectional(model, *, verify: bool = True):
    """Make a decoder attend bidirectionally over its real (non-padding) tokens; returns the model.

    With ``verify`` (default) the live probe runs and :class:`UnsupportedArchitectureError` names the
    architecture when the switch does not reach the attention layers, so a model never silently stays causal.
    """
    set_causal(model, False)
    if verify and not probe_bidirectional(model):
        set_causal(model, True)
        raise UnsupportedArchitectureError(
            f"{architecture_name(model)}: setting config.is_causal=False did not make attention bidirectional "
            "(the first token's output ignores the last token). This architecture's attention does not follow "
            "transformers' generic mask switch; bidirectional encoding is not available for it."
        )
    return model


def disable_bidirectional(model):
    """Restore causal attention; returns the model."""
    set_causal(model, True)
    return model


def _probe_ids(config, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    vocab = int(getattr(config.get_text_config() if hasattr(config, "get_text_config") else config, "vocab_size"))
    low = min(vocab - 1, 200)  # skip the special-token block at the start of most vocabularies
    return torch.randint(low, vocab, (1, seq_len), generator=generator)


def _first_token_changes(model, ids: torch.Tensor, mask: torch.Tensor, last: int, new_token: int) -> bool:
    """Does replacing token ``last`` (a real token) change the hidden state at position 0?"""
    device = next(model.parameters()).device
    other = ids.clone()
    other[0, last] = new_token
    batch = torch.cat([ids, other]).to(device)
    out = model(input_ids=batch, attention_mask=mask.expand(2, -1).to(device), output_hidden_states=True)
    hidden = out.hidden_states[-1].float()
    first_a, first_b = hidden[0, 0], hidden[1, 0]
    scale = first_a.abs().max().clamp_min(1e-6)
    return bool(((first_a - first_b).abs().max() / scale) > 1e-4)


def probe_bidirectional(model, seq_len: int = 8, seed: int = 0) -> bool:
    """Live check: does the first token's output depend on the last real token?

    Runs two tiny forward passes in eval mode: one without padding and one with right padding (the
    attention mask then comes from the padding, the path where SDPA can otherwise fall back to causal).
    Returns ``True`` only if both are bidirectional. Works on an Encoder, a SentenceTransformer, a
    PEFT model or a plain transformers model.

    >>> probe_bidirectional(Encoder.from_pretrained("smollm2-135m"))  # doctest: +SKIP
    True
    """
    model = unwrap_model(model)
    generator = torch.Generator().manual_seed(seed)
    ids = _probe_ids(model.config, seq_len, generator)
    new_token = int(ids[0, -1]) - 1
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            full = torch.ones(1, seq_len, dtype=torch.long)
            unpadded = _first_token_changes(model, ids, full, seq_len - 1, new_token)
            padded_mask = full.clone()
            padded_mask[0, -2:] = 0  # two right-padding positions; the last real token is at seq_len - 3
            padded = _first_token_changes(model, ids, padded_mask, seq_len - 3, new_token)
    finally:
        model.train(was_training)
    return unpadded and padded
