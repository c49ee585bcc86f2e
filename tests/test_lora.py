"""LoRA on all linear projections and the fused LoRA dropout (same maths, less time and memory)."""

import math

import pytest
import torch
from tiny import tiny_model

from llm2embed.training.lora import FusedDropoutLinear, _DropoutMatmul, add_lora, keep_mask


def test_keep_mask_rate():
    torch.manual_seed(0)
    mask = keep_mask((400, 1000), 0.05)
    assert mask.dtype == torch.bool
    n = mask.numel()
    assert abs(mask.float().mean().item() - 0.95) < 4 * math.sqrt(0.95 * 0.05 / n)
    assert keep_mask((3, 5), 0.0).all()


def test_fused_dropout_gradients_match_plain_autograd():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    mask = keep_mask(x.shape, 0.3)
    out = _DropoutMatmul.apply(x, w, mask, 1 / 0.7)
    grad = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, w), grad)
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = torch.nn.functional.linear(x2 * mask / 0.7, w2)
    rx, rw = torch.autograd.grad(ref, (x2, w2), grad)
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(gx, rx, atol=1e-5) and torch.allclose(gw, rw, atol=1e-5)


def test_fused_dropout_under_bfloat16_autocast_matches_plain_autograd():
    """Training with ``bf16: true`` on CPU runs the fused dropout under autocast: same maths as plain autograd."""
    torch.manual_seed(0)
    x = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(4, 16, requires_grad=True)
    mask = keep_mask(x.shape, 0.3)
    grad = torch.randn(2, 7, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _DropoutMatmul.apply(x, w, mask, 1 / 0.7)
        x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        ref = torch.nn.functional.linear(x2 * mask / 0.7, w2)
    gx, gw = torch.autograd.grad(out, (x, w), grad.to(out.dtype))
    rx, rw = torch.autograd.grad(ref, (x2, w2), grad.to(ref.dtype))
    assert out.dtype == ref.dtype == torch.bfloat16
    assert (gx.dtype, gw.dtype) == (torch.float32, torch.float32)
    assert torch.allclose(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    assert torch.allclose(gx, rx, rtol=2e-2, atol=5e-2) and torch.allclose(gw, rw, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_fused_lora_matches_peft(arch):
    from peft import get_peft_model_state_dict

    ids = torch.randint(3, 500, (2, 9), generator=torch.Generator().manual_seed(0))
    plain = add_lora(tiny_model(arch), r=4, dropout=0.1, fused_dropout=False)
    fused = add_lora(tiny_model(arch), r=4, dropout=0.1)
    fused.load_state_dict(plain.state_dict())
    for p in list(plain.parameters()) + list(fused.parameters()):
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.1)  # nonzero lora_B so the adapters matter
    fused.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, FusedDropoutLinear) for m in fused.modules()) > 0
    assert set(get_peft_model_state_dict(fused)) == set(get_peft_model_state_dict(plain))
    plain.eval(), fused.eval()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).last_hidden_state, fused(input_ids=ids).last_hidden_state, atol=1e-5)
    fused.train()
    a = fused(input_ids=ids).last_hidden_state
    b = fused(input_ids=ids).last_hidden_state
    assert not torch.allclose(a, b)  # dropout is active in training
    a.sum().backward()
    grads = [p.grad for n, p in fused.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_frozen_weights_in_bf16_give_the_same_training_step_and_come_back_exact():
    """bf16 training holds the frozen LoRA base weights in bf16: same loss and LoRA gradients, fp32 restored."""
    from llm2embed.training.lora import frozen_weights_as

    torch.manual_seed(0)
    model = add_lora(tiny_model("llama"), r=4, dropout=0.0)
    for name, param in model.named_parameters():  # non-zero B so that every LoRA weight gets a gradient
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    ids = torch.randint(3, 500, (2, 9), generator=torch.Generator().manual_seed(0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def step():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids).last_hidden_state.float().pow(2).mean()
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = step()
    with frozen_weights_as(model, torch.bfloat16) as swapped:
        base = model.base_model.model.layers[0].self_attn.q_proj.base_layer.weight
        assert swapped == 7 * len(model.base_model.model.layers) and base.dtype == torch.bfloat16
        assert model.base_model.model.embed_tokens.weight.dtype == torch.float32  # never the embeddings
        loss_bf16, grads_bf16 = step()
    assert loss_bf16 == loss and grads_bf16.keys() == grads.keys() and len(grads) > 0
    assert all(torch.equal(grads[n], grads_bf16[n]) for n in grads)
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in model.named_parameters())
    with frozen_weights_as(model, None) as swapped:
        assert swapped == 0


def test_frozen_weights_stay_as_they_are_under_fsdp_deepspeed_or_full_precision(monkeypatch):
    from types import SimpleNamespace

    from llm2embed.training.lora import frozen_weights_for_training

    model = add_lora(tiny_model("llama"), r=4)
    bf16 = SimpleNamespace(bf16=True, fp16=False, fsdp="", deepspeed=None)
    with frozen_weights_for_training(model, bf16) as swapped:
        assert swapped > 0
    for args in (SimpleNamespace(bf16=False, fp16=False, fsdp="", deepspeed=None),
                 SimpleNamespace(bf16=True, fp16=False, fsdp="full_shard", deepspeed=None)):
        with frozen_weights_for_training(model, args) as swapped:
            assert swapped == 0
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # `accelerate launch --config_file examples/accelerate_fsdp.yaml`
    with frozen_weights_for_training(model, bf16) as swapped:
        assert swapped == 0
