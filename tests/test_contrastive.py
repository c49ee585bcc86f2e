"""Contrastive training: dropout views, loss, GradCache and multi-process equivalence, instructions, CLI."""

import json
import os

import pytest
import torch
from tiny import tiny_folder

from llm2embed.cli import main
from llm2embed.training.config import ModelArguments
from llm2embed.training.contrastive import (
    ContrastiveArguments,
    _instruction_prompts,
    _loss,
    build_training_encoder,
    load_pairs,
    split_sentences,
    train_contrastive,
    wiki_train_sentences,
)

TEXTS = ["a man plays a guitar on the stage", "music lessons for children", "the cat sat on the mat",
         "a woman slices an onion", "the market fell on monday", "retrieve passages about music"]


def features(encoder, texts):
    return encoder.st_model.preprocess(texts)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_simcse_dropout_views_differ_in_training_only(llama_folder, impl):
    enc = build_training_encoder(ModelArguments(model_name_or_path=llama_folder, attn_implementation=impl),
                                 ContrastiveArguments(simcse_dropout=0.3, lora_dropout=0.0))
    assert enc.model.get_base_model().config.attention_dropout == 0.3
    assert enc.probe()
    batch = features(enc, TEXTS[:3])
    enc.st_model.train()
    a = enc.st_model(dict(batch))["sentence_embedding"]
    b = enc.st_model(dict(batch))["sentence_embedding"]
    assert not torch.allclose(a, b, atol=1e-4)  # attention dropout is active for this backend
    enc.st_model.eval()
    with torch.no_grad():
        c = enc.st_model(dict(batch))["sentence_embedding"]
        d = enc.st_model(dict(batch))["sentence_embedding"]
    assert torch.equal(c, d)


def lora_grads(encoder):
    return {n: p.grad.clone() for n, p in encoder.st_model.named_parameters() if p.requires_grad and p.grad is not None}


def test_gradcache_equals_full_batch(llama_folder):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    results = []
    for loss_cls, kwargs in [(MultipleNegativesRankingLoss, {}), (CachedMultipleNegativesRankingLoss,
                                                                   {"mini_batch_size": 2})]:
        torch.manual_seed(0)
        enc = build_training_encoder(ModelArguments(model_name_or_path=llama_folder),
                                     ContrastiveArguments(simcse_dropout=0.0, lora_dropout=0.0, lora_r=4))
        for name, p in enc.st_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        enc.st_model.train()
        loss_fn = loss_cls(enc.st_model, scale=20.0, **kwargs)
        anchors, positives = features(enc, TEXTS), features(enc, TEXTS[::-1])
        loss = loss_fn([anchors, positives], None)
        loss.backward()
        results.append((loss.detach(), lora_grads(enc)))
    (full_loss, full_grads), (cached_loss, cached_grads) = results
    assert torch.allclose(full_loss, cached_loss, atol=1e-5)
    assert full_grads.keys() == cached_grads.keys() and full_grads
    for name in full_grads:
        assert torch.allclose(full_grads[name], cached_grads[name], atol=1e-5, rtol=1e-4), name


def _worker(rank, world, folder, port, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        enc = build_training_encoder(ModelArguments(model_name_or_path=folder),
                                     ContrastiveArguments(simcse_dropout=0.0, lora_dropout=0.0, lora_r=4))
        enc.st_model.train()
        half = len(TEXTS) // world
        mine = slice(rank * half, (rank + 1) * half)
        loss_fn = _loss(enc, ContrastiveArguments(loss_scale=20.0))  # the training's own loss, default settings
        assert loss_fn.gather_across_devices
        loss = loss_fn([features(enc, TEXTS[mine]), features(enc, TEXTS[::-1][mine])], None)
        torch.save(loss.detach(), f"{out}/loss{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_negatives_gathered_across_processes(llama_folder, tmp_path):
    import socket

    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_worker, args=(2, llama_folder, port, str(tmp_path)), nprocs=2, join=True)
    per_process = [torch.load(tmp_path / f"loss{r}.pt") for r in range(2)]

    torch.manual_seed(0)
    enc = build_training_encoder(ModelArguments(model_name_or_path=llama_folder),
                                 ContrastiveArguments(simcse_dropout=0.0, lora_dropout=0.0, lora_r=4))
    enc.st_model.train()
    union = MultipleNegativesRankingLoss(enc.st_model, scale=20.0)([features(enc, TEXTS),
                                                                    features(enc, TEXTS[::-1])], None)
    # each process scores its anchors against the candidates of both: their mean is the union-batch loss
    assert torch.allclose(torch.stack(per_process).mean(), union.detach(), atol=1e-5)
    alone = MultipleNegativesRankingLoss(enc.st_model, scale=20.0)([features(enc, TEXTS[:3]),
                                                                    features(enc, TEXTS[::-1][:3])], None)
    assert not torch.allclose(per_process[0], alone.detach(), atol=1e-4)  # it really saw more negatives


@pytest.mark.parametrize("mini_batch_size", [None, 2])
def test_single_process_loss_does_not_gather(llama_folder, monkeypatch, mini_batch_size):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    enc = build_training_encoder(ModelArguments(model_name_or_path=llama_folder), ContrastiveArguments(lora_r=4))
    args = ContrastiveArguments(mini_batch_size=mini_batch_size)
    assert not _loss(enc, args).gather_across_devices  # nothing to gather from: no warning, no collective
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's launch, before the trainer sets up the process group
    assert _loss(enc, args).gather_across_devices
    assert not _loss(enc, ContrastiveArguments(mini_batch_size=mini_batch_size,
                                               gather_across_devices=False)).gather_across_devices


def test_simcse_trains_saves_and_resumes(llama_folder, tmp_path):
    from transformers import TrainerCallback

    sentences = tmp_path / "s.txt"
    sentences.write_text("\n".join(f"sentence {i} about a man and a guitar on the stage {i * 7}" for i in range(120)))
    config = {"model_name_or_path": llama_folder, "dataset_name": "Wiki1M", "dataset_file_path": str(sentences),
              "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 16, "stop_after_n_steps": 8,
              "learning_rate": 1e-3, "loss_scale": 20, "simcse_dropout": 0.3, "save_steps": 4, "logging_steps": 2,
              "use_cpu": True, "lora_r": 4, "max_seq_length": 32, "disable_tqdm": True, "group_by_length": True}

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_contrastive(config, mode="simcse", callbacks=[Crash()])
    steps_run, samplers = [], set()

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps_run.append(state.global_step)
            samplers.add(type(kwargs["train_dataloader"].batch_sampler).__name__)

    train_contrastive(config, mode="simcse", callbacks=[Count()])
    assert steps_run == [5, 6, 7, 8]  # resumed from checkpoint-4
    assert samplers == {"LengthGroupedBatchSampler"}  # group_by_length: true
    meta = json.loads((tmp_path / "out/llm2embed_contrastive.json").read_text())
    assert meta["global_step"] == 8 and [s for s, _ in meta["losses"]] == [2, 4, 6, 8]
    losses = [loss for _, loss in meta["losses"]]
    assert losses[-1] < 1.0

    from sentence_transformers import SentenceTransformer

    from llm2embed import Encoder, probe_bidirectional

    plain = SentenceTransformer(str(tmp_path / "out/encoder"), device="cpu")
    assert probe_bidirectional(plain[0].auto_model)
    assert (tmp_path / "out/encoder/adapter/adapter_config.json").is_file()
    assert Encoder.from_pretrained(tmp_path / "out/encoder").encode(["music"]).shape == (1, 64)


def test_supervised_triplets_with_instruction(llama_folder, tmp_path):
    data = tmp_path / "triplets"
    data.mkdir()
    for name in ["nli", "qa"]:
        rows = [{"query": f"{name} query {i} about music", "positive": f"{name} answer {i} guitar",
                 "negative": f"{name} unrelated {i} onion"} for i in range(24)]
        (data / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    args = ContrastiveArguments(dataset_file_path=str(data), instruction="Retrieve the answer:")
    pairs = load_pairs(args, "supervised")
    assert set(pairs) == {"nli", "qa"} and pairs["nli"].column_names == ["anchor", "positive", "negative"]
    assert _instruction_prompts(args, list(pairs)) == {"nli": {"anchor": "Retrieve the answer:\n"},
                                                      "qa": {"anchor": "Retrieve the answer:\n"}}
    config = tmp_path / "sup.json"
    config.write_text(json.dumps({"model_name_or_path": llama_folder, "dataset_name": "E5",
                                  "dataset_file_path": str(data), "instruction": "Retrieve the answer:",
                                  "output_dir": str(tmp_path / "sup"), "per_device_train_batch_size": 8,
                                  "stop_after_n_steps": 4, "learning_rate": 1e-3, "use_cpu": True, "lora_r": 4,
                                  "save_strategy": "no", "disable_tqdm": True}))
    assert main(["supervised", str(config)]) == 0
    meta = json.loads((tmp_path / "sup/llm2embed_contrastive.json").read_text())
    assert meta["global_step"] == 4 and meta["sources"] == {"nli": 24, "qa": 24}


def test_bad_triplets_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"question": "q"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 lacks"):
        load_pairs(ContrastiveArguments(dataset_file_path=str(bad)), "supervised")


def test_wiki_sentences_come_from_the_train_split():
    from llm2embed.evaluation.wiki import is_held_out, load_wiki_articles

    sentences = set(wiki_train_sentences())
    assert len(sentences) > 20000
    held_out = [a for a in load_wiki_articles() if is_held_out(a.title)][:200]
    leaked = [s for a in held_out for s in split_sentences(a.extract) if s in sentences and len(s) > 80]
    assert not leaked


def test_bf16_training_saves_exact_fp32_weights(llama_folder, tmp_path):
    """bf16 autocast training holds the frozen weights in bf16 while it runs; the saved encoder is fp32, not rounded."""
    from safetensors.torch import load_file

    sentences = tmp_path / "s.txt"
    sentences.write_text("\n".join(f"sentence {i} about a man and a guitar on the stage {i * 7}" for i in range(40)))
    config = {"model_name_or_path": llama_folder, "dataset_name": "Wiki1M", "dataset_file_path": str(sentences),
              "output_dir": str(tmp_path / "out"), "per_device_train_batch_size": 8, "stop_after_n_steps": 3,
              "learning_rate": 1e-3, "bf16": True, "use_cpu": True, "lora_r": 4, "max_seq_length": 16,
              "save_strategy": "no", "disable_tqdm": True}
    train_contrastive(config, mode="simcse")
    weights = {}
    for shard in (tmp_path / "out/encoder").glob("*.safetensors"):
        weights.update(load_file(shard))
    q_proj = next(w for name, w in weights.items() if name.endswith("layers.0.self_attn.q_proj.weight"))
    assert q_proj.dtype == torch.float32
    assert not torch.equal(q_proj, q_proj.to(torch.bfloat16).float())  # fp32 values, not bf16 ones upcast
