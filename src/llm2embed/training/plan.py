"""Plan an MNTP run before it is run: parameters, memory per device, the verdict and tokens per step.

    llm2embed mntp CONFIG --plan [--gpu-memory 24GB] [--gpus N]

The model is built on the ``meta`` device from its ``config.json`` alone (a Hub id fetches only that file;
a local folder may hold nothing else), with the same LoRA as training, so the parameter counts are exact
for any architecture. Memory is then added up from small pure functions of the shape and the config:

* **weights**: every parameter in ``torch_dtype`` (divided over ``N`` GPUs with FSDP / ZeRO-3 sharding);
* **LoRA state**: the adapter in float32 (PEFT keeps adapters in float32 over bf16 weights), its gradients
  and Adam's two moments: 16 bytes per trainable parameter (sharded too); sharded runs also hold the
  all-gathered (full) weights of two decoder layers and of the embeddings / LM head while they run;
* **activations**: with gradient checkpointing, every layer's input plus one layer recomputed during the
  backward pass (:func:`layer_activation_bytes` lists what a Llama-style layer keeps: norms in float32,
  the inputs of the linear layers, RoPE'd queries/keys, attention outputs, the gated MLP, LoRA's boolean
  dropout masks and, over bf16 weights, the float32 copies PEFT makes of each LoRA input); without it, all
  layers at once;
* **masked logits**: the vocabulary projection happens only at the masked positions
  (``mlm_probability`` of the tokens, see :func:`llm2embed.training.mntp.mntp_loss`); the cross-entropy's
  float32 log-softmax and gradients are their peak (:func:`masked_logits_bytes`);
* **overhead**: a fixed allowance for the CUDA context, cuBLAS workspaces and allocator fragmentation.

The peak is weights + LoRA state + checkpoints + the larger of the masked logits (end of the forward pass)
and one recomputed layer (backward pass): they are never alive together. ``docs/scaling.md`` compares the
estimate with measured peaks.

>>> from llm2embed.training.plan import plan_mntp
>>> print(plan_mntp("mntp_llama3_8b.json", gpu_memory="24GB").report())   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MNTPPlan", "ModelShape", "checkpoint_bytes", "layer_activation_bytes", "lora_parameter_count",
           "lora_state_bytes", "masked_logits_bytes", "meta_parameter_counts", "parameter_count", "parse_memory",
           "plan_mntp"]

GIB = 1024 ** 3
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
GPU_OVERHEAD_BYTES = int(1.0 * GIB)  # CUDA context + cuBLAS/cuDNN workspaces + allocator fragmentation
ADAM_BYTES_PER_TRAINABLE = 16  # float32 parameter + gradient + exp_avg + exp_avg_sq


@dataclass(frozen=True)
class ModelShape:
    """The dimensions the estimate needs, read from a transformers config."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int
    tied_embeddings: bool = False
    gated_mlp: bool = True
    model_type: str = "llama"

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_config(cls, config) -> ModelShape:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config

        def get(*names, default=None):
            for name in names:
                value = getattr(text, name, None)
                if value is not None:
                    return value
            if default is None:
                raise ValueError(f"{type(text).__name__} has none of {names}: cannot plan this model")
            return default

        hidden = int(get("hidden_size", "n_embd", "d_model"))
        heads = int(get("num_attention_heads", "n_head"))
        return cls(
            hidden=hidden,
            layers=int(get("num_hidden_layers", "n_layer")),
            intermediate=int(get("intermediate_size", "n_inner", default=4 * hidden) or 4 * hidden),
            heads=heads,
            kv_heads=int(get("num_key_value_heads", default=heads)),
            vocab=int(get("vocab_size")),
            head_dim=int(getattr(text, "head_dim", None) or hidden // heads),
            tied_embeddings=bool(getattr(text, "tie_word_embeddings", False)),
            gated_mlp=getattr(text, "model_type", "") not in ("gpt2",),
            model_type=str(getattr(text, "model_type", "")),
        )


# ----------------------------------------------------------------------------------------------- parameters
def parameter_count(shape: ModelShape) -> int:
    """Parameters of a Llama-style decoder with its LM head: embeddings, q/k/v/o without bias, a gated MLP,
    two RMSNorms per layer and a final one; the LM head unless tied.

    >>> parameter_count(ModelShape(4096, 32, 14336, 32, 8, 128256, 128))   # Llama-3-8B
    8030261248
    """
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    attention = h * shape.heads * shape.head_dim * 2 + 2 * h * kv
    mlp = (3 if shape.gated_mlp else 2) * h * i
    per_layer = attention + mlp + 2 * h
    embeddings = shape.vocab * h * (1 if shape.tied_embeddings else 2)
    return embeddings + shape.layers * per_layer + h


def lora_parameter_count(shape: ModelShape, r: int) -> int:
    """LoRA parameters on every linear projection of the decoder: ``r * (in + out)`` each.

    >>> lora_parameter_count(ModelShape(4096, 32, 14336, 32, 8, 128256, 128), r=16)   # Llama-3-8B
    41943040
    """
    h, kv, i, q = shape.hidden, shape.kv_dim, shape.intermediate, shape.heads * shape.head_dim
    projections = [(h, q), (h, kv), (h, kv), (q, h)] + ([(h, i), (h, i), (i, h)] if shape.gated_mlp else
                                                        [(h, i), (i, h)])
    return shape.layers * sum(r * (a + b) for a, b in projections)


def meta_parameter_counts(config, lora_r: int, lora_alpha: int | None = None, lora_dropout: float = 0.05
                          ) -> tuple[int, int]:
    """``(all parameters, trainable LoRA parameters)`` of the causal LM with the training LoRA, built on the
    meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .lora import add_lora

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        total = sum(p.numel() for p in model.parameters())  # shared (tied) tensors once
        peft_decoder = add_lora(model.get_decoder(), r=lora_r, alpha=lora_alpha, dropout=lora_dropout)
    trainable = sum(p.numel() for p in peft_decoder.parameters() if p.requires_grad)
    return total, trainable


# ----------------------------------------------------------------------------------------------- memory
def weights_bytes(parameters: int, dtype_bytes: int, shards: int = 1) -> int:
    """The weights on one device; FSDP / ZeRO-3 over ``shards`` devices keeps ``1/shards`` of them."""
    return math.ceil(parameters * dtype_bytes / shards)


def lora_state_bytes(trainable: int, shards: int = 1) -> int:
    """LoRA parameters, gradients and Adam's moments, all float32 (16 bytes each), on one device."""
    return math.ceil(trainable * ADAM_BYTES_PER_TRAINABLE / shards)


def gather_bytes(shape: ModelShape, dtype_bytes: int) -> int:
    """FSDP / ZeRO-3 all-gather buffers: two decoder layers (the running one and the prefetched next) and the
    root unit holding the embeddings and LM head, unsharded while in use."""
    per_layer = (parameter_count(shape) - shape.hidden - shape.vocab * shape.hidden *
                 (1 if shape.tied_embeddings else 2)) // shape.layers
    return (2 * per_layer + shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)) * dtype_bytes


def checkpoint_bytes(shape: ModelShape, tokens: int, act_bytes: int) -> int:
    """What gradient checkpointing keeps through the forward pass: every layer's input hidden state."""
    return shape.layers * tokens * shape.hidden * act_bytes


def layer_activation_bytes(shape: ModelShape, tokens: int, act_bytes: int, lora_dropout: bool = True) -> int:
    """What one decoder layer keeps for its backward pass (``act_bytes``: 2 for bf16/fp16 weights, 4 fp32).

    Per token, in the compute dtype: the normalized inputs of the attention and MLP projections (2 h), the
    RoPE'd queries and keys and the values (h + 2 kv), the attention output and its contiguous copy (2 h),
    the gate, its activation, the up projection and their product (4 i, gated MLPs; 2 i otherwise). In
    float32: the upcast inputs of both RMSNorms (2 h). Over 16-bit weights PEFT casts each LoRA input to
    the float32 adapter (q, k, v, o, gate, up: 6 h; down: i), and each LoRA with dropout keeps a boolean
    mask of its input (6 h + i bytes).
    """
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    mlp_tensors = 4 if shape.gated_mlp else 2
    mlp_inputs = (6 * h + i) if shape.gated_mlp else (5 * h + i)  # LoRA inputs: q k v o gate up | down
    compute = (2 * h + h + 2 * kv + 2 * h + mlp_tensors * i) * act_bytes
    norms = 2 * h * 4
    lora_copies = mlp_inputs * 4 if act_bytes != 4 else 0
    masks = mlp_inputs if lora_dropout else 0
    return tokens * (compute + norms + lora_copies + masks)


def masked_logits_bytes(masked_tokens: int, vocab: int, act_bytes: int) -> int:
    """Logits at the masked positions only, at their peak in the cross-entropy's backward pass: the saved
    float32 log-softmax, the float32 gradients of the loss and of the log-softmax input, and (over 16-bit
    weights) that gradient cast back to the compute dtype."""
    return masked_tokens * vocab * (12 + (act_bytes if act_bytes != 4 else 0))


def parse_memory(text: str | int | float) -> int:
    """``"24GB"``, ``"24GiB"``, ``"80G"``, ``"16000MB"`` -> bytes. GPU memory is sold in binary units, so
    GB means GiB here (a "24 GB" card has 24 GiB).

    >>> parse_memory("24GB") == 24 * 1024 ** 3
    True
    """
    if isinstance(text, (int, float)):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"--gpu-memory: cannot read {text!r}; write it like 24GB, 80GiB or 16000MB")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmgt".index(unit or "b"))


# ----------------------------------------------------------------------------------------------- the plan
@dataclass
class MNTPPlan:
    """The figures of one planned MNTP run (bytes per device) and the verdict."""

    model: str
    shape: ModelShape
    parameters: int
    trainable: int
    dtype: str
    batch: int
    seq: int
    grad_accum: int
    gpus: int
    sharded: bool
    checkpointing: bool
    mlm_probability: float
    masked_tokens: int
    memory: dict[str, int]
    peak: int
    gpu_memory: int | None
    overhead: int
    advice: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Peak plus the fixed GPU overhead: what has to fit on the device."""
        return self.peak + self.overhead

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory is None else self.total <= self.gpu_memory

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq * self.grad_accum * self.gpus

    def report(self) -> str:
        """The plan as the text ``llm2embed mntp CONFIG --plan`` prints."""
        s = self.shape
        lines = [
            f"MNTP plan for {self.model} ({s.model_type}: hidden {s.hidden}, {s.layers} layers, intermediate "
            f"{s.intermediate}, {s.heads} heads / {s.kv_heads} kv heads, vocabulary {s.vocab})",
            f"  parameters            {self.parameters:,} ({self.parameters / 1e9:.2f}B), {self.dtype}",
            f"  trainable (LoRA)      {self.trainable:,} ({100 * self.trainable / self.parameters:.2f}%)",
            f"  micro-batch           {self.batch} x {self.seq} tokens, {self.masked_tokens} masked "
            f"(mlm_probability {self.mlm_probability}); gradient checkpointing "
            f"{'on' if self.checkpointing else 'off'}; {self.gpus} GPU(s)"
            + (", FSDP/ZeRO-3 sharded" if self.sharded else ""),
            "  memory per GPU:",
        ]
        labels = {"weights": "weights" + (f" (1/{self.gpus} of them)" if self.sharded else ""),
                  "lora_state": "LoRA params + grads + Adam (fp32)",
                  "gathered": "FSDP all-gather: 2 layers + embeddings",
                  "activations": "activations" + (" (checkpoints + 1 layer)" if self.checkpointing else
                                                  " (all layers)"),
                  "masked_logits": "logits at masked positions"}
        for key, label in labels.items():
            if key == "gathered" and not self.sharded:
                continue
            lines.append(f"    {label:<44} {self.memory[key] / GIB:8.2f} GiB")
        lines.append(f"    {'peak (logits and a recomputed layer: apart)':<44} {self.peak / GIB:8.2f} GiB")
        lines.append(f"    {'+ CUDA context, workspaces, fragmentation':<44} {self.overhead / GIB:8.2f} GiB")
        lines.append(f"    {'total':<44} {self.total / GIB:8.2f} GiB")
        if self.gpu_memory is not None:
            verdict = "FITS" if self.fits else "DOES NOT FIT"
            lines.append(f"  verdict: {verdict} in {self.gpu_memory / GIB:.0f} GiB "
                         f"({100 * self.total / self.gpu_memory:.0f}% used)")
        lines.extend(f"  - {a}" for a in self.advice)
        lines.append(f"  tokens per optimizer step: {self.tokens_per_step:,} ({self.batch} x {self.seq} x "
                     f"{self.grad_accum} accumulation x {self.gpus} GPU(s)); "
                     f"{self.masked_tokens * self.grad_accum * self.gpus:,} of them masked (trained on)")
        return "\n".join(lines)


def estimate(shape: ModelShape, parameters: int, trainable: int, *, dtype: str = "bfloat16", batch: int = 1,
             seq: int = 512, grad_accum: int = 1, mlm_probability: float = 0.15, checkpointing: bool = True,
             gpus: int = 1, sharded: bool | None = None, lora_dropout: bool = True,
             overhead: int = GPU_OVERHEAD_BYTES) -> dict[str, int]:
    """Bytes per device of each term and the ``peak`` (see the module docstring); a pure function."""
    w = DTYPE_BYTES[dtype]
    shards = gpus if (gpus > 1 and (sharded is None or sharded)) else 1
    tokens = batch * seq
    masked = masked_token_count(batch, seq, mlm_probability)
    layer = layer_activation_bytes(shape, tokens, w, lora_dropout)
    checkpoints = checkpoint_bytes(shape, tokens, w) if checkpointing else 0
    activations = checkpoints + layer if checkpointing else shape.layers * layer
    logits = masked_logits_bytes(masked, shape.vocab, w)
    memory = {"weights": weights_bytes(parameters, w, shards), "lora_state": lora_state_bytes(trainable, shards),
              "gathered": gather_bytes(shape, w) if shards > 1 else 0,
              "activations": activations, "masked_logits": logits}
    # the masked logits live at the end of the forward pass, the recomputed layer during backward
    transient = max(logits, layer) if checkpointing else logits
    resident = memory["weights"] + memory["lora_state"] + memory["gathered"] + (checkpoints if checkpointing else activations)
    memory["peak"] = resident + transient
    memory["masked_tokens"] = masked
    memory["overhead"] = overhead
    return memory


def masked_token_count(batch: int, seq: int, mlm_probability: float) -> int:
    """Expected masked positions of a micro-batch of packed blocks (position 0 is never masked)."""
    return round(batch * (seq - 1) * mlm_probability)


def _advice(shape, parameters, trainable, settings: dict[str, Any], gpu_memory: int) -> list[str]:
    """What to change when the run does not fit (or how much room is left when it does)."""
    def total(**changes):
        m = estimate(shape, parameters, trainable, **{**settings, **changes})
        return m["peak"] + m["overhead"]

    advice = []
    if total() <= gpu_memory:
        if settings["batch"] < 64:
            bigger = settings["batch"]
            while bigger < 64 and total(batch=bigger * 2) <= gpu_memory:
                bigger *= 2
            if bigger > settings["batch"]:
                advice.append(f"room for per_device_train_batch_size {bigger} "
                              f"({total(batch=bigger) / GIB:.1f} GiB)")
        return advice
    if not settings["checkpointing"] and total(checkpointing=True) <= gpu_memory:
        advice.append(f"set gradient_checkpointing: true ({total(checkpointing=True) / GIB:.1f} GiB)")
    if settings["dtype"] == "float32" and total(dtype="bfloat16") <= gpu_memory:
        advice.append(f"set torch_dtype: bfloat16 ({total(dtype='bfloat16') / GIB:.1f} GiB)")
    batch = settings["batch"]
    while batch > 1 and total(batch=batch) > gpu_memory:
        batch //= 2
    if batch < settings["batch"] and total(batch=batch) <= gpu_memory:
        accum = settings["grad_accum"] * settings["batch"] // batch
        advice.append(f"per_device_train_batch_size {batch} with gradient_accumulation_steps {accum} "
                      f"(same tokens per step; {total(batch=batch) / GIB:.1f} GiB)")
    for n in (2, 4, 8, 16, 32, 64):
        if n > settings["gpus"] and total(gpus=n, sharded=True, checkpointing=True) <= gpu_memory:
            advice.append(f"shard over {n} GPUs with FSDP (examples/accelerate_fsdp.yaml) or DeepSpeed ZeRO-3: "
                          f"{total(gpus=n, sharded=True, checkpointing=True) / GIB:.1f} GiB per GPU")
            break
    else:
        if not advice:
            advice.append("does not fit even sharded over 64 GPUs: shorten max_seq_length")
    return advice


def load_model_config(model_args):
    """The model's transformers config only: a built-in name or local folder is read from disk, a Hub id
    fetches just its ``config.json`` (``AutoConfig``); no weights are read."""
    import transformers

    from ..sources import EMBEDDED_MODELS, resolve_model

    spec = model_args.model_name_or_path
    if not spec:
        raise ValueError("config key 'model_name_or_path' is required")
    source = resolve_model(spec) if (spec in EMBEDDED_MODELS or os.path.exists(spec)) else spec
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        raise FileNotFoundError(f"model folder {source} has no config.json")
    remote = {"trust_remote_code": True} if model_args.trust_remote_code else {}
    return transformers.AutoConfig.from_pretrained(source, revision=model_args.model_revision,
                                                   token=model_args.token, cache_dir=model_args.cache_dir, **remote)


def plan_mntp(config: dict[str, Any] | str | os.PathLike, overrides: dict[str, Any] | None = None,
              gpu_memory: str | int | None = None, gpus: int = 1, sharded: bool | None = None) -> MNTPPlan:
    """Plan the MNTP run of a config (the file ``llm2embed mntp`` takes) on ``gpus`` GPUs of ``gpu_memory``.

    ``sharded`` (default: when ``gpus > 1``) splits weights and LoRA state over the GPUs (FSDP / ZeRO-3).
    """
    from .config import DataArguments, MNTPArguments, ModelArguments, parse_config

    if gpus < 1:
        raise ValueError(f"--gpus must be >= 1, got {gpus}")
    parsed = parse_config(config, [ModelArguments, DataArguments, MNTPArguments], overrides,
                          defaults={"output_dir": "unused-by-plan"})
    model_args, data_args, mntp_args, args = parsed.model, parsed.data, parsed.mntp, parsed.training
    model_config = load_model_config(model_args)
    shape = ModelShape.from_config(model_config)
    parameters, trainable = meta_parameter_counts(model_config, mntp_args.lora_r, mntp_args.lora_alpha,
                                                  mntp_args.lora_dropout)
    dtype = model_args.torch_dtype if model_args.torch_dtype in DTYPE_BYTES else (
        "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32")
    limit = getattr(model_config.get_text_config(), "max_position_embeddings", None) or 512
    settings = {"dtype": dtype, "batch": args.per_device_train_batch_size,
                "seq": data_args.max_seq_length or min(512, limit), "grad_accum": args.gradient_accumulation_steps,
                "mlm_probability": data_args.mlm_probability, "checkpointing": bool(args.gradient_checkpointing),
                "gpus": gpus, "sharded": sharded, "lora_dropout": mntp_args.lora_dropout > 0}
    memory = estimate(shape, parameters, trainable, **settings)
    budget = parse_memory(gpu_memory) if gpu_memory is not None else None
    plan = MNTPPlan(model=model_args.model_name_or_path, shape=shape, parameters=parameters, trainable=trainable,
                    dtype=dtype, batch=settings["batch"], seq=settings["seq"], grad_accum=settings["grad_accum"],
                    gpus=gpus, sharded=gpus > 1 and sharded is not False, checkpointing=settings["checkpointing"],
                    mlm_probability=settings["mlm_probability"], masked_tokens=memory["masked_tokens"],
                    memory={k: memory[k] for k in ("weights", "lora_state", "gathered", "activations",
                                                   "masked_logits")},
                    peak=memory["peak"], gpu_memory=budget, overhead=memory["overhead"])
    if budget is not None:
        plan.advice = _advice(shape, parameters, trainable, settings, budget)
    return plan
