"""Model selection on a dev set: score the encoder every N steps during contrastive training, keep the best.

This is what the SimCSE authors do (STS-B dev every 250 steps, best checkpoint kept) and what makes a short,
high-learning-rate run dependable: the run may drift after its best point, the kept weights do not. Only dev
data is ever used to choose; test scores are reported, never selected on.

The best weights (the LoRA adapter, or every weight with full fine-tuning) are written to ``output_dir/best/`` (``adapter_model.safetensors`` and
``selection.json``, each atomically) whenever the dev score improves, so a resumed run keeps its history.
At the end of training the best weights are loaded back before the encoder is saved.

>>> selector = DevSelector(encoder, load_dev_pairs("stsb-dev"), every=20, output_dir="out/simcse")  # doctest: +SKIP
>>> trainer = SentenceTransformerTrainer(..., callbacks=[selector.callback()])                     # doctest: +SKIP
>>> trainer.train(); selector.restore_best(); selector.summary()["best_step"]                      # doctest: +SKIP
40
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DevSelector", "load_dev_pairs"]

BEST_DIR = "best"
SELECTION_FILE = "selection.json"
ADAPTER_FILE = "adapter_model.safetensors"  # LoRA training
FULL_FILE = "model.safetensors"  # full fine-tuning (lora_r: 0)


def load_dev_pairs(name: str):
    """``stsb-dev`` (local copy or the Hub, see :mod:`llm2embed.public_data`) or a path to an STS-style file."""
    from ..evaluation.sts import load_sts
    from ..public_data import load_stsb

    if name in ("stsb-dev", "stsb"):
        if name == "stsb":
            raise ValueError("eval_dataset 'stsb' is the STS-B test split, which must never choose a model; "
                             "use 'stsb-dev' or an STS-style dev file")
        return load_stsb("dev")
    return load_sts(name)


class DevSelector:
    """Scores ``encoder`` on STS pairs every ``every`` optimizer steps and keeps the best LoRA weights.

    ``at_start`` also scores the weights training starts from (step 0): if training never beats them on dev,
    the start is what is kept, and the summary says so.
    """

    def __init__(self, encoder, pairs, every: int, output_dir: str | os.PathLike, autocast_dtype=None,
                 at_start: bool = True, name: str = "stsb-dev", batch_size: int = 64,
                 max_length: int | None = None) -> None:
        if every < 1:
            raise ValueError(f"eval_every_n_steps must be >= 1, got {every}")
        self.encoder, self.pairs, self.every = encoder, pairs, every
        self.folder = Path(output_dir) / BEST_DIR
        self.autocast_dtype, self.at_start, self.name, self.batch_size = autocast_dtype, at_start, name, batch_size
        self.max_length = max_length  # scored at the saved encoder's length, not the (short) training length
        self.history: list[list[float]] = []
        self.best_step: int | None = None
        self.best_score = -math.inf
        self._load()

    # ---------------------------------------------------------------- state on disk
    def _load(self) -> None:
        path = self.folder / SELECTION_FILE
        if not path.is_file():
            return
        data = json.loads(path.read_text())
        self.history = [list(h) for h in data.get("history", [])]
        self.best_step, self.best_score = data.get("best_step"), float(data.get("best_score", -math.inf))

    def _write(self, save_weights: bool) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        if save_weights:
            name, state = self._trained_state()
            tmp = self.folder / f".{name}.tmp"
            save_file({k: v.detach().cpu().clone().contiguous() for k, v in state.items()}, str(tmp))
            os.replace(tmp, self.folder / name)
        tmp = self.folder / f".{SELECTION_FILE}.tmp"
        tmp.write_text(json.dumps(self.summary(), indent=2) + "\n")
        os.replace(tmp, self.folder / SELECTION_FILE)

    def _model(self):
        return self.encoder.st_model[0].model

    def _is_lora(self) -> bool:
        return hasattr(self._model(), "peft_config")

    def _trained_state(self) -> tuple[str, dict]:
        """(file name, the weights training changes): the LoRA adapter, or every weight (full fine-tuning)."""
        if self._is_lora():
            from peft import get_peft_model_state_dict

            return ADAPTER_FILE, get_peft_model_state_dict(self._model())
        return FULL_FILE, self._model().state_dict()

    # ---------------------------------------------------------------- scoring
    def score(self) -> float:
        """Dev Spearman x 100 of the encoder as it is now (eval mode, no dropout; training mode restored)."""
        import torch

        from ..evaluation.sts import evaluate_sts

        model = self.encoder.st_model
        was_training, training_length = model.training, self.encoder.max_length
        model.eval()
        self.encoder.set_max_length(self.max_length)
        autocast = (torch.autocast(self.encoder.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        try:
            with torch.no_grad(), autocast:
                value = evaluate_sts(self.encoder, self.pairs, batch_size=self.batch_size,
                                     show_progress_bar=False)["spearman"]
        finally:
            model.train(was_training)
            self.encoder.max_length = training_length
        return float(value)

    def evaluate(self, step: int) -> float:
        """Score at ``step``; keep the weights (and write them) if they are the best so far."""
        if any(int(h[0]) == step for h in self.history):
            return next(float(h[1]) for h in self.history if int(h[0]) == step)
        # One stored figure (4 decimals) for the history, the kept score and the log line, so that the
        # pipeline's "kept step" and the training log never show the same score rounded two ways.
        value = round(self.score(), 4)
        self.history.append([step, value])
        improved = not math.isnan(value) and value > self.best_score
        if improved:
            self.best_step, self.best_score = step, value
        self._write(save_weights=improved)
        logger.info("step %d: %s Spearman %.2f%s", step, self.name, value, " (best so far)" if improved else "")
        return value

    def restore_best(self) -> None:
        """Load the best weights back into the model (nothing to do when the last evaluation was the best)."""
        from safetensors.torch import load_file

        path = self.folder / (ADAPTER_FILE if self._is_lora() else FULL_FILE)
        if self.best_step is None or not path.is_file():
            return
        if self._is_lora():
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self._model(), load_file(str(path)))
        else:
            self._model().load_state_dict(load_file(str(path)))

    def summary(self) -> dict[str, Any]:
        """``{"metric", "every", "best_step", "best_score", "history": [[step, score], ...]}``."""
        return {"metric": f"{self.name} Spearman", "every": self.every, "best_step": self.best_step,
                "best_score": None if self.best_step is None else self.best_score,
                "history": sorted(self.history)}

    def callback(self):
        """A ``TrainerCallback`` that evaluates at the start, every ``every`` steps and at the last step."""
        from transformers import TrainerCallback

        selector = self

        class DevSelectionCallback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                if selector.at_start and state.global_step == 0 and state.is_world_process_zero:
                    selector.evaluate(0)

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step % selector.every == 0 and state.is_world_process_zero:
                    selector.evaluate(state.global_step)

            def on_train_end(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    selector.evaluate(state.global_step)

        return DevSelectionCallback()
