"""One set of weights for retrieval and generation: the encoder's LoRA adapter kept unmerged on the base LLM.

An llm2embed encoder is the base decoder plus a LoRA adapter plus bidirectional attention. The base is
unchanged, so one copy of its weights serves both modes:

- ``embed``: LoRA adapter(s) on; the encoder's attention mode (bidirectional, ``is_causal=False``, for
  LLM2Vec encoders; causal for a causal encoder such as PromptEOL); the encoder's pooling, prompts,
  template, tokenizer and ``max_length``.
- ``generate``: adapter off (layer flags); causal (``is_causal=True``); the base model's chat template and
  generation config.

The attention mode is passed as the ``is_causal`` keyword on every forward call (transformers >= 5.2 reads
it per call); nothing is switched in the shared config between calls. During a forward pass transformers
writes the value into the shared ``model.config.is_causal`` and restores it afterwards, and
switching the adapter off flips the ``disable_adapters`` flag of every shared LoRA layer (what peft's
``disable_adapter()`` does, without its per-call status scan), so two threads running different modes at the
same moment would race: every ``embed`` and ``generate`` call holds one lock (:attr:`DualModel.lock`), so
calls from several threads give exactly the serial results.

Example::

    from llm2embed.dual import DualModel

    dual = DualModel.from_pretrained("runs/default/simcse/encoder")   # or "smollm2-135m" (no adapter)
    vectors = dual.embed(["A man plays a guitar.", "Guitar lessons for beginners."])
    queries = dual.embed(["who teaches guitar?"], kind="query")          # the stored query instruction
    answer = dual.generate([{"role": "user", "content": "Name a string instrument."}], max_new_tokens=32)

Loading a saved encoder folder reads its ``llm2embed.json`` (the base spec), its ``adapter/`` folder and, for
an encoder trained by ``llm2embed simcse``/``supervised``, the stage record beside it
(``llm2embed_contrastive.json``: the MNTP adapter merged before training, or the encoder it continued from),
so the adapters are stacked unmerged in training order. The stacked adapters are then checked against the
merged weights saved in the folder (one projection, read lazily): a chain that does not reproduce the
encoder is an error, never a silently different embedding.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .encoder import ADAPTER_DIR, METADATA_FILE, TEXT_ONLY_MODALITY, Encoder, _read_metadata
from .sources import resolve_model

logger = logging.getLogger(__name__)

__all__ = ["Completion", "DualModel", "adapter_chain"]

STAGE_METADATA_FILE = "llm2embed_contrastive.json"  # written by llm2embed simcse / supervised beside encoder/
EMBED_KINDS = ("document", "query")


@dataclass
class Completion:
    """The result of :meth:`DualModel.complete`: text, new token ids, token counts and why it stopped."""

    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" (end-of-turn token) or "length" (max_new_tokens reached)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class _ModeForward(torch.nn.Module):
    """Calls ``inner`` with ``is_causal`` set on every forward: the attention mode travels with the call.

    Exposes ``config`` and forwards attribute look-ups to ``inner`` so sentence-transformers and the
    probe treat it as the model; deliberately has no ``get_base_model`` (that would skip the mode).
    """

    def __init__(self, inner: torch.nn.Module, is_causal: bool):
        super().__init__()
        self.inner = inner
        self.is_causal = bool(is_causal)

    @property
    def config(self):
        return self.inner.config

    def forward(self, *args, **kwargs):
        kwargs["is_causal"] = self.is_causal
        return self.inner(*args, **kwargs)


def _is_saved_encoder(path: Path) -> bool:
    return (path / "modules.json").is_file() and (path / METADATA_FILE).is_file()


def adapter_chain(folder: str | os.PathLike) -> tuple[str, list[Path]]:
    """``(base spec, [adapter folders in training order])`` of a saved encoder folder.

    The encoder's own adapter is ``folder/adapter`` (a folder without one is taken as the base converted
    as is; :meth:`DualModel.from_pretrained` checks that against the saved weights). When ``folder`` is the ``encoder/`` of a contrastive
    stage, the stage record beside it names what the adapter was trained on: an MNTP adapter merged into
    the base first, or a previous saved encoder (whose chain comes first).

    >>> adapter_chain("runs/default/simcse/encoder")     # doctest: +SKIP
    ('smollm2-135m', [PosixPath('runs/default/mntp'), PosixPath('runs/default/simcse/encoder/adapter')])
    """
    folder = Path(folder)
    meta = _read_metadata(str(folder))
    adapter = folder / ADAPTER_DIR
    own = [adapter] if (adapter / "adapter_config.json").is_file() else []  # none: the base converted as is
    stage_path = folder.parent / STAGE_METADATA_FILE
    if stage_path.is_file():
        stage = json.loads(stage_path.read_text())
        base_model = stage.get("base_model")
        chain: list[Path] = []
        if base_model and _is_saved_encoder(Path(base_model)):
            base, chain = adapter_chain(base_model)
        else:
            base = base_model or meta.get("base")
        if stage.get("mntp_adapter"):
            chain.append(Path(stage["mntp_adapter"]))
        return str(base), [*chain, *own]
    base = meta.get("base")
    if not base:
        raise ValueError(f"{folder / METADATA_FILE} records no base model ('base'); cannot load it unmerged")
    return str(base), own


class _SharedTransformer:
    """Builds a sentence-transformers ``Transformer`` module around an already loaded model (no second copy)."""

    @staticmethod
    def build(tokenizer_path: str, module: torch.nn.Module, max_seq_length: int):
        from sentence_transformers.sentence_transformer.modules import Transformer

        class Shared(Transformer):
            def _load_model(self, *args, shared_module=None, **kwargs):  # the module we already hold
                return shared_module

        return Shared(tokenizer_path, model_kwargs={"shared_module": module}, max_seq_length=max_seq_length,
                      modality_config=TEXT_ONLY_MODALITY, module_output_name="token_embeddings")


class DualModel:
    """A decoder LLM that embeds (adapter on, the encoder's attention) and chats (adapter off, causal) from one copy.

    Build it with :meth:`from_pretrained`. ``encoder`` is an :class:`~llm2embed.Encoder` whose transformer
    is the shared model seen through the adapter with ``is_causal=False``; ``causal_lm`` is the base
    ``*ForCausalLM`` that :meth:`generate` runs with the adapter disabled. Every call holds :attr:`lock`.

    >>> dual = DualModel.from_pretrained("smollm2-135m")                               # doctest: +SKIP
    >>> dual.embed(["hello", "world"]).shape                                            # doctest: +SKIP
    (2, 576)
    >>> dual.generate("What is the capital of France?", max_new_tokens=16)            # doctest: +SKIP
    'The capital of France is Paris.'
    """

    def __init__(self, causal_lm, peft_model, encoder: Encoder, chat_tokenizer, name: str,
                 adapters: Sequence[str] = ()):
        self.causal_lm = causal_lm
        self.peft_model = peft_model          # None when the encoder has no adapter (the plain base)
        self.encoder = encoder
        self.chat_tokenizer = chat_tokenizer
        self.name = name
        self.adapters = list(adapters)
        self.spec = name                      # what loads it again (a saved folder's absolute path)
        self.lock = threading.RLock()
        self.stats = {"embed_calls": 0, "generate_calls": 0}
        self._layers = None                   # the LoRA layers, found on the first generate call

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, *, adapters: Sequence[str | os.PathLike] | None = None,
                        device: str | None = None, torch_dtype: str | torch.dtype | None = None,
                        max_length: int | None = None, pooling_mode: str | None = None,
                        prompt_template: str | None = None, verify: bool = True) -> DualModel:
        """Load the base weights once and the encoder's adapter(s) unmerged on top.

        Args:
            model: a saved encoder folder (its ``adapter/`` and base spec are used) or a base model spec
                (``smollm2-135m``, a folder, a ``.gguf`` file, a Hub id): then the encoder is the plain base
                made bidirectional, unless ``adapters`` are given.
            adapters: LoRA adapter folders to stack instead of the ones found in the folder.
            device: ``cpu``, ``cuda``, ... (default: sentence-transformers' choice).
            torch_dtype: ``float32`` (default), ``bfloat16`` or ``float16``.
            max_length, pooling_mode: override the saved encoder's (default 512 tokens, ``mean``).
            prompt_template: for a base model spec, embed through a template (``"prompteol"``: causal, last
                token, left padding); a saved encoder's own template and attention mode are always used.
            verify: run the bidirectional probe on the embed path (bidirectional encoders) and, for a saved
                encoder, check the stacked adapters against its merged weights.
        """
        from peft import PeftModel
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .bidirectional import UnsupportedArchitectureError, probe_bidirectional
        from .integrations import QUERY_PROMPT, stored_query_prompt
        from .pooling import build_pooling
        from .prompts import TEMPLATE_SETTINGS, apply_prompt_template

        spec = os.fspath(model)
        folder = Path(spec).expanduser()
        saved = _is_saved_encoder(folder)
        if saved:
            meta = _read_metadata(str(folder))
            base, chain = adapter_chain(folder)
            pooling_mode = pooling_mode or meta.get("pooling_mode") or "mean"
            skip_instruction = meta.get("skip_instruction", True)
            max_length = max_length or meta.get("max_length") or 512
            prompt_template = meta.get("prompt_template")
            bidirectional = bool(meta.get("bidirectional", True))
            padding_side = None  # the saved tokenizer's
        elif folder.is_dir() and (folder / "modules.json").is_file():
            raise ValueError(f"{folder} is a sentence-transformers folder without llm2embed.json: it has no base "
                             "model and adapter to share with generation")
        else:
            base, chain = spec, []
            settings = TEMPLATE_SETTINGS.get(prompt_template, {}) if prompt_template else {}
            pooling_mode = pooling_mode or settings.get("pooling_mode") or "mean"
            skip_instruction = True
            max_length = max_length or 512
            bidirectional = bool(settings.get("bidirectional", True))
            padding_side = settings.get("padding_side")
        if adapters is not None:
            chain = [Path(a) for a in adapters]
        for adapter in chain:
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"adapter folder {adapter} has no adapter_config.json")

        source = resolve_model(base)
        dtype = getattr(torch, torch_dtype) if isinstance(torch_dtype, str) else (torch_dtype or torch.float32)
        causal_lm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, use_safetensors=True)
        causal_lm.eval()
        backbone = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.base_model
        peft_model = None
        names = []
        for i, adapter in enumerate(chain):
            name = f"adapter{i}"
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(backbone, str(adapter), adapter_name=name, is_trainable=False)
            else:
                peft_model.load_adapter(str(adapter), adapter_name=name, is_trainable=False)
            names.append(name)
        if len(names) > 1:
            peft_model.base_model.set_adapter(names)  # LoRA sums every active adapter: W + d1 + d2 + ...
        if peft_model is not None:
            peft_model.eval()

        embed_module = _ModeForward(peft_model if peft_model is not None else backbone, is_causal=not bidirectional)
        tokenizer_path = str(folder) if saved else source
        transformer = _SharedTransformer.build(tokenizer_path, embed_module, max_seq_length=int(max_length))
        if prompt_template:
            apply_prompt_template(transformer, prompt_template)
        pooling = build_pooling(transformer.get_embedding_dimension(), pooling_mode, skip_instruction)
        st_model = SentenceTransformer(modules=[transformer, pooling], device=device)
        encoder = Encoder(st_model, pooling_mode=pooling_mode, skip_instruction=skip_instruction, base=base)
        encoder._configure(saved=saved, pooling_mode=pooling_mode, skip_instruction=skip_instruction,
                           max_length=max_length, padding_side=padding_side, overrides={})
        encoder.prompt_template = prompt_template
        if saved:
            from .integrations import DOCUMENT_PROMPT

            prompt = stored_query_prompt(folder)
            st_model.prompts = {QUERY_PROMPT: prompt, DOCUMENT_PROMPT: ""} if prompt else {}
            st_model.default_prompt_name = None

        chat_tokenizer = AutoTokenizer.from_pretrained(source)
        if chat_tokenizer.pad_token is None:
            chat_tokenizer.pad_token = chat_tokenizer.eos_token or chat_tokenizer.unk_token
        dual = cls(causal_lm, peft_model, encoder, chat_tokenizer,
                   name=folder.name if saved else spec, adapters=[str(a) for a in chain])
        dual.spec = str(folder.resolve()) if saved else spec
        if verify:
            if bidirectional and not probe_bidirectional(embed_module):
                raise UnsupportedArchitectureError(
                    f"{type(backbone).__name__}: is_causal=False per call did not make attention bidirectional")
            if saved and adapters is None:
                dual._check_against_merged(folder)
        return dual

    def _check_against_merged(self, folder: Path, rtol: float = 1e-3) -> None:
        """The base plus the stacked adapters must reproduce one projection saved in the encoder folder."""
        from safetensors import safe_open

        weights = folder / "model.safetensors"
        if not weights.is_file():
            return  # sharded or other layout: nothing cheap to compare with
        backbone = self.peft_model.base_model.model if self.peft_model is not None else self.encoder.model.inner
        lora = [(n, m) for n, m in backbone.named_modules() if hasattr(m, "get_delta_weight")]
        linear = [(n, m) for n, m in backbone.named_modules() if isinstance(m, torch.nn.Linear)]
        if not (lora or linear):
            return
        prefix, layer = (lora or linear)[0]
        key = prefix + ".weight"
        with safe_open(str(weights), framework="pt") as fh:
            if key not in fh.keys():
                return
            merged = fh.get_tensor(key).float()
        with torch.no_grad():
            base_layer = layer.get_base_layer() if lora else layer
            ours = base_layer.weight.detach().float().clone()
            for name in (layer.active_adapters if lora else []):
                if name in layer.lora_A:
                    ours += layer.get_delta_weight(name).float()
        error = (ours - merged).abs().max().item() / max(merged.abs().max().item(), 1e-12)
        if error > rtol:
            found = f"the adapters {self.adapters}" if self.adapters else "no adapter/ folder (merged weights only)"
            raise ValueError(
                f"{folder}: base {self.encoder.base!r} with {found} does not reproduce the merged weights saved "
                f"there ({key}: relative difference {error:.2e}). Keep the adapter when saving (no --merge / "
                "merge_before_save), or pass the full adapter chain with adapters=[...] in training order"
            )

    # ------------------------------------------------------------------ properties
    @property
    def tokenizer(self):
        """The encoder's tokenizer (for chunking texts the way :meth:`embed` sees them)."""
        return self.encoder.tokenizer

    @property
    def embedding_dimension(self) -> int:
        return self.encoder.embedding_dimension

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def query_prompt(self) -> str:
        from .integrations import query_instruction

        return query_instruction(self.encoder)

    @property
    def generation_config(self):
        return self.causal_lm.generation_config

    # ------------------------------------------------------------------ embedding
    def embed(self, texts: str | Sequence[str], *, kind: str = "document", instruction: str | None = None,
              batch_size: int = 32, normalize: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        """Embed texts with the adapter on and the encoder's attention mode (``Encoder.encode`` of the encoder).

        ``kind="query"`` puts the stored query instruction in front (attended to, not pooled);
        ``instruction`` overrides it. Embeddings are L2-normalised unless ``normalize=False``.

        >>> dual.embed(["hello", "world"]).shape    # doctest: +SKIP
        (2, 576)
        """
        if kind not in EMBED_KINDS:
            raise ValueError(f"kind must be 'document' or 'query', got {kind!r}")
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"text at index {bad} is {type(items[bad]).__name__}; expected a string")
        prompt = instruction if instruction is not None else (self.query_prompt if kind == "query" else "")
        inputs = [[prompt, t] for t in items] if prompt else items
        with self.lock:
            self.stats["embed_calls"] += 1
            out = self.encoder.encode(inputs, batch_size=batch_size, normalize_embeddings=normalize,
                                      show_progress_bar=show_progress_bar, convert_to_numpy=True)
        return out[0] if single else out

    # ------------------------------------------------------------------ generation
    def _messages(self, messages) -> list[dict[str, str]]:
        if isinstance(messages, str):
            return [{"role": "user", "content": messages}]
        if not isinstance(messages, Sequence) or not messages:
            raise TypeError("messages must be a string or a non-empty list of {'role', 'content'} dicts")
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise TypeError(f"message {i} must be a dict with string 'role' and 'content', got {m!r:.80}")
            out.append({"role": m["role"], "content": m["content"]})
        return out

    def chat_input_ids(self, messages) -> torch.Tensor:
        """The prompt token ids: the base model's chat template with the assistant turn opened."""
        encoded = self.chat_tokenizer.apply_chat_template(self._messages(messages), add_generation_prompt=True,
                                                          return_tensors="pt", return_dict=True)
        return encoded["input_ids"]

    def complete(self, messages, *, max_new_tokens: int = 256, temperature: float | None = None,
                 top_p: float | None = None, do_sample: bool | None = None, seed: int | None = None,
                 streamer=None) -> Completion:
        """Generate the assistant's reply with the adapter off and causal attention; details included.

        ``messages``: a string (one user turn) or OpenAI-style ``[{"role", "content"}, ...]``. Sampling
        settings default to the base model's generation config (greedy for the embedded default);
        ``temperature=0`` means greedy. ``seed`` makes sampling repeatable.
        """
        from transformers import GenerationConfig

        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        input_ids = self.chat_input_ids(messages)
        config = GenerationConfig.from_dict(self.causal_lm.generation_config.to_dict())
        config.max_new_tokens = max_new_tokens
        if config.pad_token_id is None:
            config.pad_token_id = self.chat_tokenizer.pad_token_id
        if temperature is not None and temperature <= 0:
            do_sample = False
        elif temperature is not None:
            config.temperature = float(temperature)
            do_sample = True if do_sample is None else do_sample
        if top_p is not None:
            config.top_p = float(top_p)
        if do_sample is not None:
            config.do_sample = bool(do_sample)
        if not config.do_sample:
            config.temperature, config.top_p, config.top_k = None, None, None
        device = next(self.causal_lm.parameters()).device
        input_ids = input_ids.to(device)
        with self.lock:
            self.stats["generate_calls"] += 1
            if seed is not None:
                torch.manual_seed(seed)
            with self._adapter_off(), torch.inference_mode():
                out = self.causal_lm.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                              generation_config=config, streamer=streamer, is_causal=True)
        new = out[0, input_ids.shape[1]:].tolist()
        eos = config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        finish = "stop" if new and new[-1] in eos else "length"
        text = self.chat_tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text=text.strip(), token_ids=new, prompt_tokens=int(input_ids.shape[1]),
                          finish_reason=finish)

    def generate(self, messages, *, max_new_tokens: int = 256, **kwargs: Any) -> str:
        """The assistant's reply as text (see :meth:`complete` for the options).

        >>> dual.generate([{"role": "user", "content": "Say hello."}], max_new_tokens=16)  # doctest: +SKIP
        'Hello! How can I help you today?'
        """
        return self.complete(messages, max_new_tokens=max_new_tokens, **kwargs).text

    @contextmanager
    def _adapter_off(self):
        """The LoRA layers switched off for the block: each layer's ``disable_adapters`` flag, which its
        forward reads, set and restored (the lock is held by the caller).

        Same effect as ``PeftModel.disable_adapter()``, whose entry also builds ``get_model_status()`` over
        every module and whose exit resets ``requires_grad`` on every adapter weight: ~70 ms a switch on
        SmolLM2 (1.6 % of an embed call of 32 sentences). Here the layers are found once and only the flag
        flips; ``tests/test_dual.py`` checks that generation then equals the plain base model's.
        """
        layers = self._lora_layers()
        before = [layer._disable_adapters for layer in layers]
        for layer in layers:
            layer._disable_adapters = True
        try:
            yield
        finally:
            for layer, flag in zip(layers, before):
                layer._disable_adapters = flag

    def _lora_layers(self) -> list:
        if self._layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._layers = [] if self.peft_model is None else [
                m for m in self.peft_model.modules() if isinstance(m, BaseTunerLayer)]
        return self._layers

    def __repr__(self) -> str:
        return (f"DualModel(name={self.name!r}, base={self.encoder.base!r}, adapters={len(self.adapters)}, "
                f"pooling_mode={self.encoder.pooling_mode!r}, dimension={self.embedding_dimension})")
