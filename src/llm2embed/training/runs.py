"""What every training stage shares: seeding, checkpoint discovery for resuming, and the step limit.

>>> output_dir, resume = prepare_run(training_args, fresh=False)   # doctest: +SKIP
>>> trainer.train(resume_from_checkpoint=resume)                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["REQUIRED_CHECKPOINT_FILES", "autocast_dtype", "close_distributed", "last_complete_checkpoint",
           "prepare_run", "stop_after_n_steps", "wait_for_all_processes",
           "world_size"]

REQUIRED_CHECKPOINT_FILES = ("trainer_state.json",)
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors")  # LoRA training, or full fine-tuning


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder that was written completely (a kill mid-save leaves it partial)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        step = child.name.removeprefix("checkpoint-")
        if (child.is_dir() and step.isdigit() and all((child / f).is_file() for f in REQUIRED_CHECKPOINT_FILES)
                and any((child / f).is_file() for f in WEIGHT_FILES)):
            found.append((int(step), child))
    return str(max(found)[1]) if found else None


def autocast_dtype(args):
    """The dtype the trainer autocasts to (``bf16``/``fp16`` training arguments), or None in full precision."""
    import torch

    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


def prepare_run(args, fresh: bool) -> tuple[Path, str | None]:
    """Seed, default non-reentrant gradient checkpointing, drop checkpoints with ``fresh``; returns
    ``(output_dir, checkpoint to resume from or None)``."""
    from transformers import set_seed

    if args.gradient_checkpointing and not args.gradient_checkpointing_kwargs:
        args.gradient_checkpointing_kwargs = {"use_reentrant": False}
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    if fresh and output_dir.exists():
        for checkpoint in output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    resume = None if fresh else last_complete_checkpoint(output_dir)
    if resume:
        logger.info("resuming from %s", resume)
    return output_dir, resume


def stop_after_n_steps(n_steps: int):
    """A Trainer callback that stops (and saves) at step ``n_steps``, like the official ``stop_after_n_steps``."""
    from transformers import TrainerCallback

    class StopAfterNSteps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= n_steps:
                control.should_training_stop = True
                control.should_save = True  # a checkpoint at the stopping step, for exact resumption

    return StopAfterNSteps()


def world_size() -> int:
    """Processes in this run: the process group's size, else torchrun's ``WORLD_SIZE`` (set before the trainer
    makes the group), else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def wait_for_all_processes() -> None:
    """Under torchrun, hold every process until all arrive (e.g. until rank 0 has written the result)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def close_distributed() -> None:
    """End a torchrun process cleanly: without this, a process that exits while another still works can
    abort in gloo's threads ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
