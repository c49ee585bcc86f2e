"""Sharded LoRA MNTP (FSDP2) on 2 CPU processes with gloo.

accelerate runs FSDP only on accelerator devices (its ``AcceleratorState`` turns FSDP on for MULTI_GPU-like
types, never for MULTI_CPU), so ``examples/accelerate_fsdp.yaml`` cannot be launched on this CPU machine.
What it asks accelerate to do is tested here directly: ``fully_shard`` on every decoder layer, then on the
LoRA-wrapped decoder (FSDP2, TRANSFORMER_BASED_WRAP), and real MNTP steps (fused LoRA dropout, loss on the
masked positions only) on the sharded model.
"""

import os
import tempfile

import torch
import torch.distributed as dist
import yaml

from tiny import tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mntp_batch(rank):
    g = torch.Generator().manual_seed(rank)
    ids = torch.randint(3, 500, (2, 16), generator=g)
    labels = ids.clone()
    labels[:, ::2] = -100
    return ids, labels


def _worker(rank, world, store, out, results):
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    from llm2embed.bidirectional import enable_bidirectional
    from llm2embed.training.lora import add_lora
    from llm2embed.training.mntp import mntp_loss
    from llm2embed.training.sharding import full_adapter_state

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)

    def build():
        torch.manual_seed(0)
        lm = tiny_model("llama", causal_lm=True).train()
        enable_bidirectional(lm)
        return lm, add_lora(lm.get_decoder(), r=4, dropout=0.05)

    def loss_of(lm, decoder, ids, labels):
        hidden = decoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return mntp_loss(hidden, labels, lm.get_output_embeddings(), lm.config)[0]

    ids, labels = _mntp_batch(rank)
    plain_lm, plain = build()
    plain.eval()  # no dropout: the reference loss of this rank's micro-batch, unsharded
    with torch.no_grad():
        reference = float(loss_of(plain_lm, plain, ids, labels))

    lm, decoder = build()
    for layer in lm.get_decoder().layers:
        fully_shard(layer)
    fully_shard(decoder)
    params = list(decoder.parameters())
    sharded = [p for p in params if isinstance(p, DTensor)]
    decoder.eval()
    with torch.no_grad():
        sharded_loss = float(loss_of(lm, decoder, ids, labels))
    decoder.train()
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        loss = loss_of(lm, decoder, ids, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    lora_b = [p.detach().full_tensor() for name, p in decoder.named_parameters() if "lora_B" in name]
    state = full_adapter_state(decoder)  # every process gathers; the main one saves a normal adapter folder
    saved = None
    if rank == 0:
        from safetensors.torch import load_file

        decoder.save_pretrained(os.path.join(out, "adapter"), state_dict=state)
        files = load_file(os.path.join(out, "adapter", "adapter_model.safetensors"))
        saved = {"tensors": len(files), "expected": len(state),
                 "whole": {k: tuple(v.shape) for k, v in files.items()}
                 == {k.replace(".default", ""): tuple(v.shape) for k, v in state.items()}}
    results[rank] = {"saved": saved, "sharded": len(sharded), "params": len(params),
                     "local": sum(p.to_local().numel() for p in sharded), "full": sum(p.numel() for p in sharded),
                     "reference": reference, "sharded_loss": sharded_loss, "losses": losses,
                     "lora_b_moved": all(float(b.abs().max()) > 0 for b in lora_b)}
    dist.destroy_process_group()


def _entry(rank, world, store, out, queue):
    results = {}
    _worker(rank, world, store, out, results)
    queue.put(results)


def test_shipped_accelerate_config_asks_for_fsdp2_per_decoder_layer():
    config = yaml.safe_load(open(os.path.join(ROOT, "examples", "accelerate_fsdp.yaml")))
    fsdp = config["fsdp_config"]
    assert config["distributed_type"] == "FSDP" and fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the adapter is saved whole


def test_lora_mntp_steps_on_a_fsdp2_sharded_model_over_two_gloo_processes(tmp_path):
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    store = tempfile.mktemp(prefix="fsdp-store-")
    procs = [ctx.Process(target=_entry, args=(rank, 2, store, str(tmp_path), queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        results.update(queue.get(timeout=300))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    print(f"FSDP2 on 2 gloo processes: {results}")
    for rank, r in results.items():
        assert r["sharded"] == r["params"] > 0       # every parameter (base and LoRA) is a DTensor ...
        assert r["local"] * 2 == r["full"]           # ... of which this process holds half
        assert abs(r["sharded_loss"] - r["reference"]) < 1e-4  # sharding does not change the MNTP loss
        assert r["losses"][-1] < r["losses"][0]      # the LoRA trains
        assert r["lora_b_moved"]                     # lora_B starts at zero: the adapter received updates
    saved = results[0]["saved"]  # the adapter gathered whole and saved as a normal PEFT folder
    assert saved["tensors"] == saved["expected"] > 0 and saved["whole"]
