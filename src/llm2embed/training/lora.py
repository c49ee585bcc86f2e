"""LoRA on every linear projection of any decoder, with a faster, leaner LoRA dropout.

PEFT's LoRA computes ``lora_B(lora_A(dropout(x)))``: on CPU, drawing each dropout mask with ``bernoulli``
costs a fifth of an MNTP step, and every layer keeps its own dropped copy of ``x`` for the backward pass.
:func:`fuse_lora_dropout` replaces that pair with one autograd function that draws the mask from 16-bit
random words (four masks' worth of bits per 64-bit draw, keep probability exact to 1/65536), keeps only the
boolean mask and the shared input ``x``, and recomputes the dropped input in backward. The adapter's weights,
names and saved files are unchanged (``lora_A.<adapter>.weight``), so PEFT saves, loads and merges it as usual.

>>> peft_model = add_lora(decoder, r=16, dropout=0.05)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
import torch.nn.functional as F

__all__ = ["FusedDropoutLinear", "add_lora", "frozen_weights_as", "frozen_weights_for_training", "fuse_lora_dropout",
           "keep_mask"]


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device=None) -> torch.Tensor:
    """A boolean mask that is ``True`` with probability ``1 - p`` (p quantized to 1/65536), from torch's RNG."""
    n = math.prod(shape)
    threshold = round(p * 65536) - 32768
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape) >= threshold


class _DropoutMatmul(torch.autograd.Function):
    """``(x * mask * scale) @ weight.T`` that saves ``x`` and the boolean mask, not the dropped input."""

    @staticmethod
    def forward(ctx, x, weight, mask, scale):
        ctx.save_for_backward(x, weight, mask)
        ctx.scale = scale
        out = F.linear(x * mask, weight) * scale  # scaling the rank-r output is cheaper than the input
        ctx.compute_dtype = out.dtype  # bfloat16 under autocast: backward computes in it too
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, mask = ctx.saved_tensors
        dtype = ctx.compute_dtype
        grad = grad.to(dtype) * ctx.scale
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = ((grad @ weight.to(dtype)) * mask).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dropped = (x.to(dtype) * mask).reshape(-1, x.shape[-1])
            grad_w = (grad.reshape(-1, grad.shape[-1]).T @ dropped).to(weight.dtype)
        return grad_x, grad_w, None, None


class FusedDropoutLinear(torch.nn.Linear):
    """A LoRA ``A`` projection with its input dropout built in (see the module docstring)."""

    dropout_p: float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout_p == 0.0:
            return F.linear(x, self.weight, self.bias)
        mask = keep_mask(x.shape, self.dropout_p, x.device)
        out = _DropoutMatmul.apply(x, self.weight, mask, 1.0 / (1.0 - self.dropout_p))
        return out if self.bias is None else out + self.bias


def fuse_lora_dropout(peft_model) -> int:
    """Swap PEFT's ``dropout -> lora_A`` pairs for :class:`FusedDropoutLinear`; returns how many were fused."""
    fused = 0
    for module in peft_model.modules():
        drops, a_layers = getattr(module, "lora_dropout", None), getattr(module, "lora_A", None)
        if not isinstance(drops, torch.nn.ModuleDict) or not isinstance(a_layers, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            layer = a_layers[name] if name in a_layers else None
            if not isinstance(drop, torch.nn.Dropout) or type(layer) is not torch.nn.Linear:
                continue
            layer.__class__ = FusedDropoutLinear
            layer.dropout_p = float(drop.p)
            drops[name] = torch.nn.Identity()
            fused += 1
    return fused


def add_lora(model, r: int = 8, alpha: int | None = None, dropout: float = 0.05, fused_dropout: bool = True):
    """Wrap ``model`` with LoRA on all its linear projections (PEFT's ``all-linear``: no per-model list).

    ``alpha`` defaults to ``2 * r`` as in LLM2Vec.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules="all-linear",
                        bias="none")
    peft_model = get_peft_model(model, config)
    if fused_dropout:
        fuse_lora_dropout(peft_model)
    return peft_model


@contextlib.contextmanager
def frozen_weights_as(peft_model, dtype: torch.dtype | None):
    """Inside the block, the frozen weights under every LoRA layer are held in ``dtype``; restored on exit.

    Autocast casts each frozen fp32 weight to bf16 again at every forward (13 % of a forward, profiled on CPU),
    since it only caches casts of weights that require grad. Holding the bf16 copies for the whole training
    run removes those casts with the same arithmetic: the matmul sees the same bf16 weight either way. Only
    the ``base_layer`` linears of LoRA layers are touched, never embeddings, norms or a tied head, and the
    original fp32 tensors come back on exit (on a GPU they wait in host memory, which also frees device memory),
    so merging and saving are exact. Yields how many were swapped.

    >>> with frozen_weights_as(peft_model, torch.bfloat16):   # doctest: +SKIP
    ...     trainer.train()
    """
    swapped = []
    if dtype is not None:
        bases = {id(m): m for m in _lora_bases(peft_model)}
        elsewhere = {id(p) for m in peft_model.modules() if id(m) not in bases for p in m.parameters(recurse=False)}
        for base in bases.values():
            weight = base.weight
            if weight.requires_grad or weight.dtype == dtype or id(weight) in elsewhere:
                continue
            original = weight.data if weight.device.type == "cpu" else weight.data.to("cpu")  # GPU: kept in host RAM
            swapped.append((weight, original))
            weight.data = weight.data.to(dtype)
    try:
        yield len(swapped)
    finally:
        for weight, original in swapped:
            weight.data = original.to(weight.device)


def frozen_weights_for_training(peft_model, training_args):
    """:func:`frozen_weights_as` in the trainer's autocast dtype; a no-op in full precision and when FSDP or
    DeepSpeed own the parameters (they shard and cast them themselves)."""
    from .runs import autocast_dtype

    launched = any(os.environ.get(f"ACCELERATE_USE_{kind}", "").lower() in ("1", "true")
                   for kind in ("FSDP", "DEEPSPEED"))  # what `accelerate launch` sets for those configs
    sharded = launched or bool(getattr(training_args, "fsdp", None) or getattr(training_args, "deepspeed", None))
    return frozen_weights_as(peft_model, None if sharded else autocast_dtype(training_args))


def _lora_bases(peft_model) -> list[torch.nn.Linear]:
    """The plain linears wrapped by LoRA layers (their ``base_layer``)."""
    return [m.base_layer for m in peft_model.modules()
            if hasattr(m, "lora_A") and type(getattr(m, "base_layer", None)) is torch.nn.Linear]
