"""MNTP: masked next token prediction on a bidirectional decoder, with LoRA (step 2 of LLM2Vec).

A fraction of the tokens is masked; the model, attending bidirectionally, predicts the original token at a
masked position *i* from its output at position *i - 1* (a decoder's outputs are trained to predict the
*next* token, so this keeps the LM head's alignment). Unlike the official script, the vocabulary projection
and the cross-entropy are computed only at positions that have a target (about ``mlm_probability`` of them),
not at every position.

    llm2embed mntp mntp_config.json [--key value ...] [--fresh]

>>> from llm2embed.training.mntp import train_mntp
>>> train_mntp({"model_name_or_path": "smollm2-135m", "train_file": "wiki", "output_dir": "out/mntp",
...             "max_seq_length": 128, "stop_after_n_steps": 200})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .lora import add_lora, frozen_weights_for_training
from .runs import prepare_run, stop_after_n_steps, wait_for_all_processes
from .sharding import full_adapter_state
from .config import (ConfigError, DataArguments, MNTPArguments, ModelArguments, choose_attn_implementation,
                     parse_config)

logger = logging.getLogger(__name__)

__all__ = ["MNTPCollator", "MASK_TOKEN_TYPES", "mask_tokens", "mntp_loss", "train_mntp"]

MASK_TOKEN_TYPES = ("blank", "eos", "mask", "pad")
COLLATOR_TYPES = ("default", "all_mask")
METADATA_FILE = "llm2embed_mntp.json"
IGNORE = -100


# ----------------------------------------------------------------------------------------------- masking
def maskable_positions(attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor) -> torch.Tensor:
    """Positions that may be masked: real, non-special tokens, never position 0 (nothing precedes it)."""
    allowed = attention_mask.bool() & ~special_tokens_mask.bool()
    allowed[:, 0] = False
    return allowed


def mask_tokens(input_ids: torch.Tensor, allowed: torch.Tensor, mask_token_id: int, probability: float,
                strategy: str = "default", vocab_size: int | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``probability`` of the allowed positions; returns ``(masked_input_ids, labels)``.

    ``labels`` holds the original token at masked positions and -100 elsewhere. ``strategy="default"``
    replaces 80% of the chosen tokens with the mask token, 10% with a random token and keeps 10%;
    ``"all_mask"`` replaces all of them with the mask token.
    """
    if strategy not in COLLATOR_TYPES:
        raise ValueError(f"data_collator_type must be one of {COLLATOR_TYPES}, got {strategy!r}")
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1], got {probability}")
    probs = torch.full(input_ids.shape, probability) * allowed
    chosen = torch.bernoulli(probs, generator=generator).bool()
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    masked = input_ids.clone()
    if strategy == "all_mask":
        masked[chosen] = mask_token_id
        return masked, labels
    to_mask = chosen & torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool()
    masked[to_mask] = mask_token_id
    to_random = chosen & ~to_mask & torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool()
    if vocab_size is None:
        raise ValueError("strategy 'default' needs vocab_size for random replacements")
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    masked[to_random] = random_tokens[to_random]
    return masked, labels


@dataclass
class MNTPCollator:
    """Pads a list of tokenized examples (right side) and masks them for MNTP."""

    pad_token_id: int
    mask_token_id: int
    vocab_size: int
    mlm_probability: float = 0.15
    strategy: str = "default"

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in examples[0]:  # masked already (the validation set): pad only
            return self._pad_premasked(examples)
        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(examples), length), dtype=torch.long)
        special = torch.ones((len(examples), length), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, :n] = torch.as_tensor(e["input_ids"])
            attention[row, :n] = 1
            special[row, :n] = torch.as_tensor(e.get("special_tokens_mask", [0] * n))
        allowed = maskable_positions(attention, special)
        masked, labels = mask_tokens(ids, allowed, self.mask_token_id, self.mlm_probability, self.strategy,
                                     self.vocab_size)
        return {"input_ids": masked, "attention_mask": attention, "labels": labels}

    def _pad_premasked(self, examples):
        length = max(len(e["input_ids"]) for e in examples)
        out = {"input_ids": torch.full((len(examples), length), self.pad_token_id, dtype=torch.long),
               "attention_mask": torch.zeros((len(examples), length), dtype=torch.long),
               "labels": torch.full((len(examples), length), IGNORE, dtype=torch.long)}
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            out["input_ids"][row, :n] = torch.as_tensor(e["input_ids"])
            out["attention_mask"][row, :n] = 1
            out["labels"][row, :n] = torch.as_tensor(e["labels"])
        return out

    def premask(self, dataset, seed: int = 0):
        """Mask a dataset once with a fixed seed, so every evaluation scores the same positions."""
        generator = torch.Generator().manual_seed(seed)

        def apply(example):
            ids = torch.as_tensor([example["input_ids"]])
            special = torch.as_tensor([example.get("special_tokens_mask", [0] * ids.shape[1])])
            allowed = maskable_positions(torch.ones_like(ids), special)
            masked, labels = mask_tokens(ids, allowed, self.mask_token_id, self.mlm_probability, self.strategy,
                                         self.vocab_size, generator=generator)
            return {"input_ids": masked[0].tolist(), "labels": labels[0].tolist()}

        return dataset.map(apply, remove_columns=[c for c in dataset.column_names if c != "input_ids"],
                           load_from_cache_file=False, desc="masking the validation set")


# ----------------------------------------------------------------------------------------------- loss
def output_logits(hidden: torch.Tensor, lm_head: torch.nn.Module, config) -> torch.Tensor:
    """The LM head on selected hidden states, with the model's logit scaling or soft-capping if it has one."""
    logits = lm_head(hidden)
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)):
        logits = logits * scale
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def mntp_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module, config=None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy of the token at each labelled position *i* predicted from the output at *i - 1*.

    Only the labelled positions go through the vocabulary projection. Returns ``(mean loss, number of
    correct predictions, number of targets)``; the loss is 0 (with a graph) when there is no target.
    """
    targets = labels[:, 1:]
    selected = targets != IGNORE
    count = selected.sum()
    if count == 0:
        return hidden.sum() * 0.0, count, count
    logits = output_logits(hidden[:, :-1][selected], lm_head, config).float()
    gold = targets[selected]
    loss = F.cross_entropy(logits, gold)
    correct = (logits.argmax(-1) == gold).sum()
    return loss, correct, count


# ----------------------------------------------------------------------------------------------- model
def mask_token_id_for(tokenizer, mask_token_type: str) -> tuple[int, bool]:
    """The token used for masking and whether it was newly added (``mask`` type on a tokenizer without one)."""
    if mask_token_type not in MASK_TOKEN_TYPES:
        raise ValueError(f"mask_token_type must be one of {MASK_TOKEN_TYPES}, got {mask_token_type!r}")
    if mask_token_type == "blank":
        ids = tokenizer.convert_tokens_to_ids("_")
        if ids is None or ids == tokenizer.unk_token_id:
            ids = tokenizer("_", add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ValueError("mask_token_type 'blank': '_' is not a single token of this tokenizer")
            ids = ids[0]
        tokenizer.mask_token = tokenizer.convert_ids_to_tokens(ids)
        return int(ids), False
    if mask_token_type == "eos":
        if tokenizer.eos_token_id is None:
            raise ValueError("mask_token_type 'eos': the tokenizer has no EOS token")
        tokenizer.mask_token = tokenizer.eos_token
        return int(tokenizer.eos_token_id), False
    if mask_token_type == "pad":
        if tokenizer.pad_token_id is None:
            raise ValueError("mask_token_type 'pad': the tokenizer has no pad token")
        tokenizer.mask_token = tokenizer.pad_token
        return int(tokenizer.pad_token_id), False
    added = tokenizer.mask_token is None
    if added:
        tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return int(tokenizer.mask_token_id), added


def _torch_dtype(name: str | None):
    if name in (None, "auto"):
        return "auto" if name == "auto" else torch.float32
    return getattr(torch, name)


def load_mntp_model(model_args: ModelArguments, mntp_args: MNTPArguments, seed: int = 42):
    """Base causal LM (bidirectional) with LoRA on every linear projection of its decoder.

    Returns ``(peft_decoder, causal_lm, tokenizer, mask_token_id)``. LoRA is applied to the decoder
    (``get_decoder()``), so the saved adapter loads onto ``AutoModel`` as used by the encoder; the LM head
    stays frozen outside it.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..bidirectional import enable_bidirectional
    from ..sources import resolve_model

    if not model_args.model_name_or_path:
        raise ValueError("config key 'model_name_or_path' is required")
    source = resolve_model(model_args.model_name_or_path)
    remote = {"trust_remote_code": True} if model_args.trust_remote_code else {}
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=_torch_dtype(model_args.torch_dtype), use_safetensors=True,
        attn_implementation=choose_attn_implementation(model_args.attn_implementation),
        revision=model_args.model_revision, token=model_args.token, cache_dir=model_args.cache_dir, **remote)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or source, **remote)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    mask_id, added = mask_token_id_for(tokenizer, mntp_args.mask_token_type)
    if added:
        torch.manual_seed(seed)
        model.resize_token_embeddings(len(tokenizer))
    decoder = model.get_decoder()
    if model_args.peft_model_name_or_path:
        decoder = PeftModel.from_pretrained(decoder, model_args.peft_model_name_or_path).merge_and_unload()
    if mntp_args.bidirectional:
        enable_bidirectional(model)
    model.config.use_cache = False
    if mntp_args.lora_r < 1:
        raise ConfigError(f"MNTP trains a LoRA adapter: lora_r must be >= 1, got {mntp_args.lora_r}")
    peft_decoder = add_lora(decoder, r=mntp_args.lora_r, alpha=mntp_args.lora_alpha, dropout=mntp_args.lora_dropout)
    for p in model.get_output_embeddings().parameters():
        p.requires_grad_(False)
    return peft_decoder, model, tokenizer, mask_id


# ----------------------------------------------------------------------------------------------- training
def _trainer_class():
    from transformers import Trainer

    class MNTPTrainer(Trainer):
        """Trainer whose loss projects only the masked positions onto the vocabulary."""

        def __init__(self, *args, lm_head, lm_config, **kwargs):
            super().__init__(*args, **kwargs)
            self.lm_head = lm_head
            self.lm_config = lm_config
            self.model_accepts_loss_kwargs = False  # mean over targets per micro-batch, as the official script

        def _mntp_forward(self, model, inputs):
            hidden = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
            return mntp_loss(hidden, inputs["labels"], self.lm_head, self.lm_config)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, correct, count = self._mntp_forward(model, inputs)
            return (loss, {"correct": correct, "count": count}) if return_outputs else loss

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                loss, correct, count = self._mntp_forward(model, inputs)
            stats = torch.stack([correct, count]).view(1, 2).float()
            return loss.detach(), stats, stats

    return MNTPTrainer


def _masked_accuracy(eval_pred) -> dict[str, float]:
    stats = eval_pred.predictions.reshape(-1, 2)
    return {"accuracy": float(stats[:, 0].sum() / max(stats[:, 1].sum(), 1))}


def _save_outputs(output_dir: Path, peft_decoder, tokenizer, metadata: dict[str, Any],
                  adapter_state: dict | None = None) -> None:
    """Write the adapter, tokenizer and metadata into ``output_dir`` file by file via rename (metadata last).

    ``adapter_state``: the adapter gathered whole when training was sharded (FSDP2).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=output_dir))
    try:
        peft_decoder.save_pretrained(str(tmp), **({"state_dict": adapter_state} if adapter_state else {}))
        tokenizer.save_pretrained(str(tmp))
        for item in tmp.iterdir():
            os.replace(item, output_dir / item.name)
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        os.replace(tmp / METADATA_FILE, output_dir / METADATA_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def train_mntp(config: dict[str, Any] | str | os.PathLike, overrides: dict[str, Any] | None = None,
               fresh: bool = False, callbacks: list | None = None) -> dict[str, Any]:
    """Run MNTP from an official-style config (dict or JSON/YAML path); returns the final metrics.

    Resumes from the last complete checkpoint in ``output_dir`` unless ``fresh``. Writes the LoRA adapter,
    the tokenizer and ``llm2embed_mntp.json`` to ``output_dir`` (``merge: true`` also writes ``merged/``).
    """
    from .corpora import load_texts, tokenize_blocks

    parsed = parse_config(config, [ModelArguments, DataArguments, MNTPArguments], overrides)
    model_args, data_args, mntp_args, args = parsed.model, parsed.data, parsed.mntp, parsed.training
    output_dir, resume = prepare_run(args, fresh)

    peft_decoder, causal_lm, tokenizer, mask_id = load_mntp_model(model_args, mntp_args, seed=args.seed)
    max_len = data_args.max_seq_length or min(512, tokenizer.model_max_length)
    texts = load_texts(data_args, seed=args.seed)
    blocks = tokenize_blocks(texts, tokenizer, max_len, data_args.line_by_line,
                             data_args.preprocessing_num_workers, data_args.overwrite_cache)
    train_ds, eval_ds = blocks["train"], blocks["validation"]
    if data_args.max_train_samples is not None:
        train_ds = train_ds.select(range(min(len(train_ds), data_args.max_train_samples)))
    if data_args.max_eval_samples is not None:
        eval_ds = eval_ds.select(range(min(len(eval_ds), data_args.max_eval_samples)))
    if len(train_ds) == 0:
        raise ValueError(f"no training blocks: the data has fewer than max_seq_length={max_len} tokens")

    collator = MNTPCollator(pad_token_id=tokenizer.pad_token_id, mask_token_id=mask_id, vocab_size=len(tokenizer),
                            mlm_probability=data_args.mlm_probability, strategy=mntp_args.data_collator_type)
    if len(eval_ds):
        eval_ds = collator.premask(eval_ds, seed=args.seed)
    args.remove_unused_columns = False
    args.label_names = ["labels"]
    trainer = _trainer_class()(
        model=peft_decoder, args=args, train_dataset=train_ds,
        eval_dataset=eval_ds if args.do_eval or args.eval_strategy != "no" else None,
        data_collator=collator, compute_metrics=_masked_accuracy,
        callbacks=[stop_after_n_steps(mntp_args.stop_after_n_steps), *(callbacks or [])],
        lm_head=causal_lm.get_output_embeddings(), lm_config=causal_lm.config)
    trainer.lm_head.to(args.device)

    metrics: dict[str, Any] = {}
    with frozen_weights_for_training(peft_decoder, args):
        result = trainer.train(resume_from_checkpoint=resume)
    metrics.update(result.metrics)
    if (args.do_eval or args.eval_strategy != "no") and len(eval_ds):
        metrics.update(trainer.evaluate())
    adapter_state = full_adapter_state(trainer.model)  # FSDP2: every process takes part in gathering it
    if trainer.is_world_process_zero():
        metadata = {
            "stage": "mntp",
            "base_model": model_args.model_name_or_path,
            "mask_token_type": mntp_args.mask_token_type,
            "mask_token_id": mask_id,
            "data_collator_type": mntp_args.data_collator_type,
            "mlm_probability": data_args.mlm_probability,
            "max_seq_length": max_len,
            "lora_r": mntp_args.lora_r,
            "bidirectional": mntp_args.bidirectional,
            "global_step": trainer.state.global_step,
            "losses": [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e],
            "eval_history": [[e["step"], e["eval_loss"]] for e in trainer.state.log_history if "eval_loss" in e],
            "first_eval_loss": next((e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e), None),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
        _save_outputs(output_dir, trainer.model, tokenizer, metadata, adapter_state)
        if mntp_args.merge:
            _save_merged(output_dir / "merged", trainer.model, causal_lm, tokenizer)
    wait_for_all_processes()
    return metrics


def _save_merged(target: Path, peft_decoder, causal_lm, tokenizer) -> None:
    """A full merged causal LM (adapter folded into the decoder weights), written atomically."""
    peft_decoder.merge_and_unload()  # replaces the LoRA layers inside causal_lm's decoder in place
    tmp = Path(tempfile.mkdtemp(prefix=".merged-", dir=target.parent))
    try:
        causal_lm.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
