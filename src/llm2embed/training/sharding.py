"""Sharded (FSDP2 / ZeRO-3 style) training support: the LoRA adapter gathered whole for saving.

Under FSDP2 (``accelerate launch --config_file examples/accelerate_fsdp.yaml ...``) every parameter is a
``DTensor`` of which each process holds a slice; PEFT's ``save_pretrained`` would write those slices.
:func:`full_adapter_state` gathers the adapter's tensors whole (a collective: every process calls it) so the
main process saves a normal adapter folder.

>>> state = full_adapter_state(trainer.model)            # doctest: +SKIP  (on every process)
>>> if is_main: trainer.model.save_pretrained(out, state_dict=state)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["full_adapter_state"]


def full_adapter_state(peft_model) -> dict | None:
    """The LoRA tensors of a sharded PEFT model, whole and on the CPU; ``None`` when nothing is sharded."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without DTensor: nothing can be sharded this way
        return None
    state = peft_model.state_dict()
    if not any(isinstance(v, DTensor) for v in state.values()):
        return None
    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu()
            for k, v in state.items() if "lora_" in k}
