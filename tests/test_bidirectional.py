"""Bidirectional attention per architecture: on, off, with and without padding, both padding sides."""

import json

import pytest
import torch
from tiny import ARCHITECTURES, sdpa_supported, tiny_folder, tiny_model
from transformers import AutoConfig, AutoModel

from llm2embed import Encoder, UnsupportedArchitectureError, enable_bidirectional, probe_bidirectional
from llm2embed.bidirectional import disable_bidirectional, set_causal

IMPLS = [(arch, impl) for arch in ARCHITECTURES for impl in ("sdpa", "eager") if impl == "eager" or sdpa_supported(arch)]
ROTARY = [arch for arch, (_, _, rotary) in ARCHITECTURES.items() if rotary]


def first_token_output(model, ids, mask):
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]


@pytest.mark.parametrize("arch,impl", IMPLS)
def test_switch_reaches_attention(arch, impl):
    model = tiny_model(arch, attn_implementation=impl)
    assert not probe_bidirectional(model), "a fresh decoder must be causal"
    enable_bidirectional(model)
    assert probe_bidirectional(model)
    disable_bidirectional(model)
    assert not probe_bidirectional(model)


@pytest.mark.parametrize("arch,impl", IMPLS)
def test_no_padding_sdpa_trap(arch, impl):
    """Without padding the mask is skipped and SDPA relies on is_causal: the last token must still count."""
    model = tiny_model(arch, attn_implementation=impl)
    enable_bidirectional(model)
    # the per-layer attribute that made the official llm2vec fall back to causal attention is untouched ...
    flags = [m.is_causal for m in model.modules() if hasattr(m, "is_causal") and isinstance(m.is_causal, bool)]
    assert flags and all(flags)
    # ... yet an unpadded batch (no attention mask at all) is bidirectional
    ids = torch.randint(10, 500, (1, 6), generator=torch.Generator().manual_seed(1))
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % 500
    with torch.inference_mode():
        a = model(input_ids=ids).last_hidden_state[0, 0]
        b = model(input_ids=other).last_hidden_state[0, 0]
    assert not torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("arch,impl", IMPLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_mixed_length_batch(arch, impl, bidirectional):
    """In a padded batch, the short row's first token depends on its last real token iff bidirectional,
    and never on padding."""
    model = tiny_model(arch, attn_implementation=impl)
    set_causal(model, not bidirectional)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(10, 500, (2, 8), generator=gen)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # row 1 has 5 real tokens, right-padded
    base = first_token_output(model, ids, mask)
    changed_last = ids.clone()
    changed_last[1, 4] = (changed_last[1, 4] + 7) % 500
    changed_pad = ids.clone()
    changed_pad[1, 6] = (changed_pad[1, 6] + 7) % 500
    assert torch.allclose(base[1], first_token_output(model, changed_pad, mask)[1], atol=1e-5)
    depends = not torch.allclose(base[1], first_token_output(model, changed_last, mask)[1], atol=1e-6)
    assert depends == bidirectional


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_padded_batch_equals_single(arch, tmp_path):
    """Encoding texts together (padded) gives the same embeddings as encoding each alone."""
    impl = "sdpa" if sdpa_supported(arch) else "eager"
    folder = tiny_folder(tmp_path / arch, arch, attn_implementation=impl)
    sides = ["right", "left"] if arch in ROTARY else ["right"]
    texts = ["a man plays a guitar on the stage", "music", "the cat sat on the mat in the kitchen today", "onion"]
    for side in sides:
        enc = Encoder.from_pretrained(folder, padding_side=side)
        assert enc.probe()
        batch = enc.encode(texts, batch_size=4, convert_to_tensor=True)
        alone = torch.stack([enc.encode([t], convert_to_tensor=True)[0] for t in texts])
        cos = torch.nn.functional.cosine_similarity(batch, alone)
        assert cos.min() >= 0.9999, (arch, side, cos)


def test_absolute_positions_need_right_padding(tmp_path):
    """GPT-2 builds positions from arange: left padding shifts them, so encoders default to right padding."""
    folder = tiny_folder(tmp_path / "gpt2", "gpt2")
    texts = ["a man plays a guitar on the stage", "music"]
    enc = Encoder.from_pretrained(folder)
    assert enc.tokenizer.padding_side == "right"
    alone = enc.encode(["music"], convert_to_tensor=True)[0]
    assert torch.cosine_similarity(enc.encode(texts, convert_to_tensor=True)[1], alone, dim=0) >= 0.9999
    left = Encoder.from_pretrained(folder, padding_side="left")
    assert torch.cosine_similarity(left.encode(texts, convert_to_tensor=True)[1], alone, dim=0) < 0.9999
    enc.save(tmp_path / "saved")
    assert json.loads((tmp_path / "saved/tokenizer_config.json").read_text())["padding_side"] == "right"


def test_flag_travels_in_config_json_not_kwargs(tmp_path, llama_folder):
    """A saved encoder carries is_causal=false in config.json, and plain transformers loads it bidirectional.
    We never rely on passing is_causal as a loading kwarg (transformers drops it)."""
    enc = Encoder.from_pretrained(llama_folder)
    enc.save(tmp_path / "enc")
    assert json.loads((tmp_path / "enc/config.json").read_text())["is_causal"] is False
    assert AutoConfig.from_pretrained(tmp_path / "enc").is_causal is False
    assert probe_bidirectional(AutoModel.from_pretrained(tmp_path / "enc"))
    # the source folder has no flag: the encoder sets it on the loaded config itself
    assert "is_causal" not in json.loads(open(f"{llama_folder}/config.json").read())
    assert enc.probe()


class CumulativeMeanModel(torch.nn.Module):
    """A 'decoder' whose causality is built into its arithmetic, ignoring config.is_causal."""

    def __init__(self):
        super().__init__()
        self.config = tiny_model("llama").config
        self.embed = torch.nn.Embedding(512, 16)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False, **kwargs):
        x = self.embed(input_ids).cumsum(1) / torch.arange(1, input_ids.shape[1] + 1).view(1, -1, 1)
        return type("Out", (), {"hidden_states": (x,), "last_hidden_state": x})()


def test_unsupported_architecture_is_named():
    model = CumulativeMeanModel()
    with pytest.raises(UnsupportedArchitectureError, match="CumulativeMeanModel"):
        enable_bidirectional(model)
    assert model.config.is_causal is True  # left causal, and said so
