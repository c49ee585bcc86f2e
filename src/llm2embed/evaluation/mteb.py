"""Run an llm2embed :class:`~llm2embed.Encoder` with ``mteb`` 2.x.

:class:`MTEBEncoder` implements mteb's ``EncoderProtocol``: ``encode`` receives a DataLoader of batches plus
``task_metadata`` and ``prompt_type``; ``similarity``/``similarity_pairwise`` are cosine; ``mteb_model_meta``
describes the model. Instructions follow the official llm2vec's MTEB wrapper: queries (and the texts of
symmetric tasks such as STS or classification) get the task's instruction, documents
(``prompt_type == "document"``) never do. The instruction is taken from ``instructions`` (by task name, then
task type); without that table, from the task's own metadata prompt, as llm2vec does.

Example::

    import mteb
    from llm2embed import Encoder
    from llm2embed.evaluation.mteb import MTEBEncoder

    model = MTEBEncoder(Encoder.from_pretrained("out/my-encoder"), name="me/my-encoder")
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]), cache=None)

mteb reports scores in 0-1; llm2embed's own evaluators report x 100.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MTEBEncoder", "mteb_instruction"]


def mteb_instruction(instruction: str) -> str:
    """llm2vec's formatting of an MTEB instruction: trailing dots dropped, ends with a colon.

    >>> mteb_instruction("Retrieve semantically similar text.")
    'Retrieve semantically similar text:'
    """
    instruction = instruction.strip()
    if instruction and not instruction.endswith(":"):
        instruction = instruction.rstrip(".") + ":"
    return instruction


def _prompt_type_name(prompt_type) -> str | None:
    return None if prompt_type is None else str(getattr(prompt_type, "value", prompt_type))


class MTEBEncoder:
    """An mteb 2.x encoder around anything with ``encode(list_of_str_or_[instruction, text])``.

    Args:
        encoder: an :class:`~llm2embed.Encoder` (or a compatible object).
        name: ``"organization/model"`` for mteb's metadata and result folders.
        instructions: task name or task type -> instruction; ``None`` takes the task's own prompt
            (llm2vec's behaviour), ``{}`` turns instructions off.
        revision: reported to mteb (``"local"`` by default).
    """

    def __init__(self, encoder, name: str = "llm2embed/encoder", instructions: dict[str, str] | None = None,
                 revision: str = "local"):
        self.encoder = encoder
        self.instructions = instructions
        self.name = name if "/" in name else f"llm2embed/{name}"
        self.revision = revision
        self._meta = None

    # ---------------------------------------------------------------- metadata
    @property
    def mteb_model_meta(self):
        if self._meta is None:
            from mteb.models.model_meta import ModelMeta, ScoringFunction

            dimension = getattr(self.encoder, "embedding_dimension", None)
            max_length = getattr(self.encoder, "max_length", None)
            parameters = None
            model = getattr(self.encoder, "model", None)
            if model is not None and hasattr(model, "parameters"):
                parameters = int(sum(p.numel() for p in model.parameters()))
            self._meta = ModelMeta.create_empty({
                "name": self.name, "revision": self.revision, "embed_dim": dimension, "max_tokens": max_length,
                "n_parameters": parameters, "similarity_fn_name": ScoringFunction.COSINE, "use_instructions": True,
                "framework": ["PyTorch", "Sentence Transformers"], "open_weights": True,
            })
        return self._meta

    # ---------------------------------------------------------------- instructions
    def instruction_for(self, task_metadata, prompt_type=None) -> str:
        """The instruction for one ``encode`` call ('' for documents or when none applies)."""
        kind = _prompt_type_name(prompt_type)
        if kind == "document":
            return ""
        if self.instructions is not None:
            text = self.instructions.get(task_metadata.name, self.instructions.get(task_metadata.type, ""))
        else:
            prompt = task_metadata.prompt
            if isinstance(prompt, dict):
                prompt = prompt.get(kind or "query", "")
            if not prompt:
                from mteb.abstasks.abstask import get_abstask_prompt

                prompt = get_abstask_prompt(task_metadata.name) or ""
            text = prompt
        return mteb_instruction(text or "")

    # ---------------------------------------------------------------- EncoderProtocol
    def encode(self, inputs, *, task_metadata, hf_split: str = "", hf_subset: str = "", prompt_type=None,
               **kwargs: Any) -> np.ndarray:
        """Embed every text of the DataLoader ``inputs`` (batches with a ``"text"`` column)."""
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.instruction_for(task_metadata, prompt_type)
        items = [[instruction, t] for t in texts] if instruction else texts
        emb = self.encoder.encode(items, batch_size=int(kwargs.get("batch_size", 32)),
                                  show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
                                  convert_to_numpy=True)
        return np.asarray(emb, dtype=np.float32)

    def similarity(self, embeddings1, embeddings2):
        from mteb.similarity_functions import cos_sim

        return cos_sim(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        from mteb.similarity_functions import pairwise_cos_sim

        return pairwise_cos_sim(embeddings1, embeddings2)
