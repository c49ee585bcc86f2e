"""Contrastive training: unsupervised SimCSE and supervised hard-negative training (steps 3 and 4 of LLM2Vec).

Both run on sentence-transformers' trainer and losses: ``MultipleNegativesRankingLoss`` is exactly LLM2Vec's
InfoNCE (cosine similarity x ``loss_scale``, cross-entropy against the other texts of the batch, plus hard
negatives when the data has them); ``CachedMultipleNegativesRankingLoss`` is GradCache (``mini_batch_size``);
``gather_across_devices`` gathers embeddings across processes with gradients under ``torchrun``.

* **SimCSE**: each sentence is its own positive; the two views differ only by dropout
  (``attention_dropout = simcse_dropout`` on the model, plus LoRA dropout), so training mode matters.
  ``train_sampling_strategy: group_by_length`` (old key ``group_by_length: true``) draws batches of
  similar-length sentences (:mod:`.sampling`): half the padding.
* **Supervised**: JSONL rows with ``query``, ``positive``, ``negative`` (the E5 / echo-embeddings format). A
  folder of JSONL files is one source dataset per file; every batch comes from one source, and
  ``batch_sampler: no_duplicates`` keeps duplicate texts out of a batch. An instruction (``instruction`` for
  all, or ``instructions`` per file stem) goes before queries only and is excluded from pooling.

    llm2embed simcse simcse_config.json
    llm2embed supervised supervised_config.json

>>> train_contrastive({"model_name_or_path": "smollm2-135m", "peft_model_name_or_path": "out/mntp",
...                    "dataset_name": "wiki", "output_dir": "out/simcse"}, mode="simcse")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ModelArguments, parse_config

logger = logging.getLogger(__name__)

__all__ = ["ContrastiveArguments", "load_pairs", "train_contrastive", "wiki_train_sentences"]

METADATA_FILE = "llm2embed_contrastive.json"


@dataclass
class ContrastiveArguments:
    """The official run_simcse.py / run_supervised.py keys (plus a few of ours)."""

    dataset_name: str | None = field(default=None, metadata={
        "help": "wiki (embedded corpus, SimCSE); nli (NLI triplets) or stsb-train (STS-B train pairs scored >= 4) "
                "for supervised: local copy or the Hub; or a path"})
    dataset_file_path: str | None = field(default=None, metadata={"help": ".txt sentences, .jsonl triplets or a folder"})
    max_seq_length: int | None = field(default=128, metadata={"help": "longest training input in tokens"})
    encoder_max_length: int | None = field(default=None, metadata={
        "help": "longest input of the saved encoder (default 512, or the model's context if smaller); "
                "the training length never carries over"})
    pooling_mode: str | None = field(default=None, metadata={
        "help": "mean, weighted_mean, eos_token, last_token, ... (default: the saved encoder's, the prompt "
                "template's, else mean)"})
    bidirectional: bool = field(default=True, metadata={"help": "bidirectional attention"})
    prompt_template: str | None = field(default=None, metadata={
        "help": "wrap every text in a template, e.g. prompteol (sets last-token pooling; see llm2embed.prompts)"})
    eval_dataset: str | None = field(default=None, metadata={
        "help": "dev set that chooses the kept checkpoint: stsb-dev or an STS-style file (None: keep the last)"})
    eval_every_n_steps: int = field(default=20, metadata={"help": "score the dev set every N optimizer steps"})
    eval_at_start: bool = field(default=True, metadata={
        "help": "also score the starting weights; kept if training never beats them on dev"})
    simcse_dropout: float = field(default=0.1, metadata={"help": "attention dropout giving the two SimCSE views"})
    loss_scale: float = field(default=50.0, metadata={"help": "1 / temperature of the InfoNCE loss"})
    loss_class: str = field(default="HardNegativeNLLLoss", metadata={"help": "accepted for compatibility"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank; 0 fine-tunes every weight instead (no LoRA)"})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * lora_r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    stop_after_n_steps: int = field(default=10000, metadata={"help": "stop after this many optimizer steps"})
    mini_batch_size: int | None = field(default=None, metadata={"help": "GradCache mini-batch (None: plain loss)"})
    gather_across_devices: bool = field(default=True, metadata={"help": "negatives from all processes"})
    instruction: str | None = field(default=None, metadata={"help": "instruction before every query"})
    instructions: dict | None = field(default=None, metadata={"help": "file stem -> query instruction"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap on training examples"})
    experiment_id: str | None = field(default=None, metadata={"help": "accepted for compatibility"})
    extra_model_name_or_path: str | None = field(default=None, metadata={"help": "accepted for compatibility"})


# ----------------------------------------------------------------------------------------------- data
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Split text at sentence ends followed by a capital; keep sentences of ``min_words`` words or more.

    >>> split_sentences("The cat sat. It was happy today! ok")
    ['The cat sat.', 'It was happy today! ok']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.split()) >= min_words - 1 and s.strip()]


def wiki_train_sentences() -> list[str]:
    """Sentences of the train split of the embedded Wikipedia corpus (held-out articles never appear)."""
    from .corpora import wiki_train_texts

    seen: dict[str, None] = {}
    for text in wiki_train_texts():
        for sentence in split_sentences(text):
            seen.setdefault(sentence, None)
    return list(seen)


def _read_jsonl(path: Path) -> list[dict]:
    from ..jsonl import jsonl_rows

    rows = []
    for lineno, row in jsonl_rows(path.read_text(encoding="utf-8"), path):
        missing = {"query", "positive"} - set(row)
        if missing:
            raise ValueError(f"{path}:{lineno} lacks {sorted(missing)} (expected query, positive, negative)")
        rows.append(row)
    return rows


def load_pairs(args: ContrastiveArguments, mode: str, seed: int = 42) -> dict[str, Any]:
    """Training datasets by source name: columns ``anchor``, ``positive`` (and ``negative`` if present)."""
    from datasets import Dataset

    source = args.dataset_file_path or args.dataset_name
    if source is None:
        raise ValueError("no training data: set dataset_file_path (or dataset_name: wiki)")
    if mode == "simcse":
        if source.lower() in ("wiki", "wikipedia") or (args.dataset_name or "").lower() == "wiki":
            sentences = wiki_train_sentences()
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"sentence file {path} does not exist")
            sentences = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        ds = Dataset.from_dict({"anchor": sentences, "positive": sentences}).shuffle(seed=seed)
        if args.max_train_samples:
            ds = ds.select(range(min(len(ds), args.max_train_samples)))
        return {"sentences": ds}
    if source.lower() == "stsb-train":  # STS-B train pairs scored >= 4 of 5 as positives (in-batch negatives)
        return {"stsb_train": _triplet_dataset(stsb_train_positives(), args, seed)}
    if source.lower() in ("nli", "snli"):  # local copy or the public Hub copy (llm2embed.public_data)
        from ..public_data import load_nli_triplets

        rows, origin = load_nli_triplets()
        logger.info("NLI triplets: %d rows from %s", len(rows), origin)
        return {"nli": _triplet_dataset(rows, args, seed)}
    path = Path(source)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no triplet JSONL at {path}")
    out = {}
    for f in files:
        out[re.sub(r"\W+", "_", f.stem)] = _triplet_dataset(_read_jsonl(f), args, seed)
    return out


def stsb_train_positives(min_score: float = 4.0) -> list[dict[str, str]]:
    """STS-B *train* pairs with a gold score of at least ``min_score`` (0-5 scale) as query/positive rows.

    In-domain for STS-B, so results trained on it are reported apart from the NLI-only ones.
    """
    from ..public_data import load_stsb

    pairs = load_stsb("train")
    top = float(max(pairs.scores)) if len(pairs) else 5.0
    scale = 5.0 / top if top <= 1.0 else 1.0  # the Hub copy scores 0-1
    return [{"query": a, "positive": b} for a, b, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores)
            if score * scale >= min_score]


def _triplet_dataset(rows: list[dict], args: ContrastiveArguments, seed: int):
    """``query``/``positive``/``negative`` rows -> a shuffled dataset with anchor/positive(/negative)."""
    from datasets import Dataset

    columns = {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    if all("negative" in r for r in rows):
        columns["negative"] = [r["negative"] for r in rows]
    ds = Dataset.from_dict(columns).shuffle(seed=seed)
    if args.max_train_samples:
        ds = ds.select(range(min(len(ds), args.max_train_samples)))
    return ds


# ----------------------------------------------------------------------------------------------- model
def build_training_encoder(model_args: ModelArguments, args: ContrastiveArguments):
    """Encoder with the MNTP adapter merged, SimCSE dropout set, bidirectional, and a fresh LoRA to train."""
    from ..encoder import Encoder
    from .config import choose_attn_implementation
    from .lora import add_lora

    if not model_args.model_name_or_path:
        raise ValueError("config key 'model_name_or_path' is required")
    kwargs = {"attn_implementation": choose_attn_implementation(model_args.attn_implementation),
              "attention_dropout": args.simcse_dropout}
    if model_args.torch_dtype not in (None, "auto"):
        kwargs["torch_dtype"] = model_args.torch_dtype
    encoder = Encoder.from_pretrained(
        model_args.model_name_or_path, peft_model_name_or_path=model_args.peft_model_name_or_path,
        merge_peft=True, enable_bidirectional=args.bidirectional,
        pooling_mode=args.pooling_mode, prompt_template=args.prompt_template,
        max_length=args.max_seq_length, trust_remote_code=model_args.trust_remote_code, **kwargs)
    if args.lora_r > 0:
        transformer = encoder.st_model[0]
        transformer.model = add_lora(transformer.model, r=args.lora_r, alpha=args.lora_alpha,
                                     dropout=args.lora_dropout)
    return encoder


def _instruction_prompts(args: ContrastiveArguments, sources: list[str]) -> dict | None:
    from ..encoder import format_instruction

    if args.instructions:
        return {name: {"anchor": format_instruction(args.instructions[name])}
                for name in sources if args.instructions.get(name)} or None
    if args.instruction:
        prompt = {"anchor": format_instruction(args.instruction)}
        return {name: prompt for name in sources} if len(sources) > 1 else prompt
    return None


def _loss(encoder, args: ContrastiveArguments):
    from sentence_transformers.sentence_transformer import losses

    from .runs import world_size

    # negatives from other processes only when there are others: one process alone would only get
    # sentence-transformers' "gather without a process group" warning
    gather = args.gather_across_devices and world_size() > 1
    if args.mini_batch_size:
        return losses.CachedMultipleNegativesRankingLoss(
            encoder.st_model, scale=args.loss_scale, mini_batch_size=args.mini_batch_size,
            gather_across_devices=gather)
    return losses.MultipleNegativesRankingLoss(encoder.st_model, scale=args.loss_scale, gather_across_devices=gather)


def _trainer_class():
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformerTrainer

    class ContrastiveTrainer(SentenceTransformerTrainer):
        """Checkpoints hold only the LoRA adapter; resuming loads it back into the model in memory."""

        def _load_from_checkpoint(self, checkpoint_path: str) -> None:
            adapter = os.path.join(checkpoint_path, "adapter_model.safetensors")
            if not os.path.isfile(adapter):  # full fine-tuning (lora_r: 0): the trainer's own loading
                return super()._load_from_checkpoint(checkpoint_path)
            set_peft_model_state_dict(self.model[0].model, load_file(adapter))

    return ContrastiveTrainer


def _dev_selector(encoder, args: ContrastiveArguments, targs, output_dir: Path, fresh: bool):
    """The dev-set selector when ``eval_dataset`` is set (its saved state dropped with ``fresh``)."""
    from .runs import autocast_dtype
    from .selection import BEST_DIR, DevSelector, load_dev_pairs

    if fresh:
        shutil.rmtree(output_dir / BEST_DIR, ignore_errors=True)
    if not args.eval_dataset:
        return None
    pairs = load_dev_pairs(args.eval_dataset)
    return DevSelector(encoder, pairs, every=args.eval_every_n_steps, output_dir=output_dir,
                       autocast_dtype=autocast_dtype(targs),
                       at_start=args.eval_at_start, name=Path(args.eval_dataset).stem,
                       max_length=args.encoder_max_length)


def train_contrastive(config: dict[str, Any] | str | os.PathLike, mode: str = "simcse",
                      overrides: dict[str, Any] | None = None, fresh: bool = False,
                      callbacks: list | None = None) -> dict[str, Any]:
    """Run SimCSE (``mode="simcse"``) or supervised training from an official-style config.

    Writes a sentence-transformers folder with merged weights (bidirectional) plus ``adapter/`` to
    ``output_dir``; resumes from the last complete checkpoint unless ``fresh``.
    """
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
    from .lora import frozen_weights_for_training
    from .runs import prepare_run, stop_after_n_steps, wait_for_all_processes

    if mode not in ("simcse", "supervised"):
        raise ValueError(f"mode must be 'simcse' or 'supervised', got {mode!r}")
    defaults = {"batch_sampler": "no_duplicates" if mode == "supervised" else "batch_sampler",
                "multi_dataset_batch_sampler": "proportional", "save_strategy": "steps", "save_steps": 100,
                "logging_steps": 10}
    parsed = parse_config(config, [ModelArguments, ContrastiveArguments], overrides, defaults=defaults,
                          training_class=SentenceTransformerTrainingArguments)
    model_args, args, targs = parsed.model, parsed.contrastive, parsed.training
    output_dir, resume = prepare_run(targs, fresh)

    datasets = load_pairs(args, mode, seed=targs.seed)
    sources = list(datasets)
    targs.prompts = _instruction_prompts(args, sources)
    if isinstance(targs.batch_sampler, str):
        targs.batch_sampler = BatchSamplers(targs.batch_sampler)
    if str(targs.train_sampling_strategy) == "group_by_length":
        if targs.batch_sampler == BatchSamplers.BATCH_SAMPLER:
            from .sampling import LengthGroupedBatchSampler

            targs.batch_sampler = LengthGroupedBatchSampler
        else:
            logger.warning("train_sampling_strategy=group_by_length is ignored with batch_sampler=%s",
                           targs.batch_sampler)
    if isinstance(targs.multi_dataset_batch_sampler, str):
        targs.multi_dataset_batch_sampler = MultiDatasetBatchSamplers(targs.multi_dataset_batch_sampler)
    encoder = build_training_encoder(model_args, args)
    selector = _dev_selector(encoder, args, targs, output_dir, fresh)
    train_dataset = datasets if len(datasets) > 1 else datasets[sources[0]]
    trainer = _trainer_class()(
        model=encoder.st_model, args=targs, train_dataset=train_dataset, loss=_loss(encoder, args),
        callbacks=[stop_after_n_steps(args.stop_after_n_steps), *([selector.callback()] if selector else []),
                   *(callbacks or [])])
    with frozen_weights_for_training(encoder.st_model[0].model, targs):
        result = trainer.train(resume_from_checkpoint=resume)
    metrics = dict(result.metrics)
    if trainer.is_world_process_zero():
        if selector is not None:
            selector.restore_best()
        encoder.set_max_length(args.encoder_max_length)  # the short training length must not leak into use
        encoder.save(output_dir / "encoder")
        meta = {"stage": mode, "base_model": model_args.model_name_or_path,
                "selection": selector.summary() if selector else None,
                "mntp_adapter": model_args.peft_model_name_or_path, "global_step": trainer.state.global_step,
                "sources": {k: len(v) for k, v in datasets.items()},
                "losses": [[e["step"], e["loss"]] for e in trainer.state.log_history if "loss" in e],
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        (output_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    wait_for_all_processes()
    return metrics
