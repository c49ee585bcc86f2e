"""LlamaIndex wrappers around one :class:`~llm2embed.dual.DualModel`: its embeddings and its chat, same weights.

``DualModelEmbedding`` is a LlamaIndex ``BaseEmbedding`` (documents: ``embed``; queries: ``embed`` with the
stored query instruction) and ``DualModelLLM`` is a LlamaIndex ``CustomLLM`` (a chat model: messages go
through the base model's chat template, adapter off, causal). Both hold the same ``DualModel``, so an index
and its query engine run on one copy of the weights. Needs ``pip install llama-index-core``.

>>> from llama_index.core import Document, VectorStoreIndex
>>> from llm2embed.llamaindex import llamaindex_models
>>> embed_model, llm = llamaindex_models("runs/default/simcse/encoder")             # doctest: +SKIP
>>> index = VectorStoreIndex.from_documents([Document(text="...")], embed_model=embed_model)  # doctest: +SKIP
>>> print(index.as_query_engine(llm=llm, similarity_top_k=3).query("What is ...?"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("llm2embed.llamaindex needs `pip install llama-index-core`") from exc

__all__ = ["DualModelEmbedding", "DualModelLLM", "llamaindex_models"]


class DualModelEmbedding(BaseEmbedding):
    """LlamaIndex embeddings from a :class:`~llm2embed.dual.DualModel` (adapter on, bidirectional).

    Queries get the model's stored query instruction (or ``query_instruction``); texts get none.
    Embeddings are L2-normalised.

    >>> embed_model = DualModelEmbedding(dual)                 # doctest: +SKIP
    >>> len(embed_model.get_query_embedding("who wrote Hamlet?"))   # doctest: +SKIP
    576
    """

    _dual: Any = PrivateAttr()
    _instruction: str | None = PrivateAttr(default=None)

    def __init__(self, dual, query_instruction: str | None = None, embed_batch_size: int = 32, **kwargs: Any):
        super().__init__(model_name=str(getattr(dual, "name", "llm2embed")), embed_batch_size=embed_batch_size,
                         **kwargs)
        self._dual = dual
        self._instruction = query_instruction

    @classmethod
    def class_name(cls) -> str:
        return "llm2embed_dual_embedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._dual.embed([query], kind="query", instruction=self._instruction)[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._dual.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._dual.embed(list(texts), batch_size=self.embed_batch_size).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embedding(text)


class DualModelLLM(CustomLLM):
    """A LlamaIndex ``CustomLLM`` answering with a :class:`~llm2embed.dual.DualModel` (adapter off, causal).

    A chat model for LlamaIndex (``is_chat_model=True``): ``chat`` sends the messages through the base
    model's chat template; ``complete`` sends the prompt as one user message. ``max_new_tokens`` and
    ``temperature`` (``None``: the base generation config; 0: greedy) apply to every call.

    >>> llm = DualModelLLM(dual, max_new_tokens=128)                              # doctest: +SKIP
    >>> llm.complete("Name a string instrument.").text                           # doctest: +SKIP
    """

    max_new_tokens: int = 256
    temperature: float | None = None
    _dual: Any = PrivateAttr()

    def __init__(self, dual, max_new_tokens: int = 256, temperature: float | None = None, **kwargs: Any):
        super().__init__(max_new_tokens=max_new_tokens, temperature=temperature, **kwargs)
        self._dual = dual

    @classmethod
    def class_name(cls) -> str:
        return "llm2embed_dual_llm"

    @property
    def metadata(self) -> LLMMetadata:
        config = self._dual.causal_lm.config
        return LLMMetadata(context_window=int(getattr(config, "max_position_embeddings", 2048)),
                           num_output=self.max_new_tokens, is_chat_model=True,
                           model_name=str(getattr(self._dual, "name", "llm2embed")))

    def _generate(self, messages: list[dict[str, str]], streamer=None):
        return self._dual.complete(messages, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                   streamer=streamer)

    def _stream(self, messages: list[dict[str, str]]):
        """``(text so far, new piece)`` while the dual model generates on a worker thread."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self._dual.chat_tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work():
            try:
                self._generate(messages, streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=work, name="llm2embed-llamaindex-generate", daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            if piece:
                yield text, piece
        worker.join()
        if errors:
            raise errors[0]

    @staticmethod
    def _as_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        out = []
        for m in messages:
            role = m.role.value if hasattr(m.role, "value") else str(m.role)
            out.append({"role": "system" if role == "developer" else role, "content": m.content or ""})
        return out

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        completion = self._generate(self._as_dicts(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=completion.text),
                            raw={"token_ids": completion.token_ids, "finish_reason": completion.finish_reason})

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            for text, piece in self._stream(self._as_dicts(messages)):
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        completion = self._generate([{"role": "user", "content": prompt}])
        return CompletionResponse(text=completion.text, raw={"token_ids": completion.token_ids})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for text, piece in self._stream([{"role": "user", "content": prompt}]):
                yield CompletionResponse(text=text, delta=piece)

        return gen()


def llamaindex_models(model: Any, max_new_tokens: int = 256, query_instruction: str | None = None):
    """``(DualModelEmbedding, DualModelLLM)`` sharing one :class:`~llm2embed.dual.DualModel`.

    ``model``: a ``DualModel`` or anything :meth:`DualModel.from_pretrained` loads (a saved encoder folder,
    ``smollm2-135m``, ...).

    >>> embed_model, llm = llamaindex_models("smollm2-135m")    # doctest: +SKIP
    """
    from .dual import DualModel

    dual = model if isinstance(model, DualModel) else DualModel.from_pretrained(os.fspath(model))
    return DualModelEmbedding(dual, query_instruction=query_instruction), DualModelLLM(dual, max_new_tokens)
