"""Prompt templates that wrap every text before it is embedded (e.g. PromptEOL), stored in the saved folder.

A template is a Jinja chat template rendered by sentence-transformers' ``message`` modality: the text goes
in the middle, so a template can put words both before and after it, which a plain prompt prefix cannot.
It is saved with the tokenizer (``chat_template.jinja``) and the modality in ``sentence_bert_config.json``,
so ``SentenceTransformer(path)`` reproduces it without llm2embed. An instruction (``[instruction, text]``)
arrives as a system message and is put before the template.

**PromptEOL** (Jiang et al. 2023, arXiv 2307.16645): ``This sentence : "X" means in one word:"``, causal
attention, the last token's hidden state; no training. When truncation is needed, sentence-transformers cuts
the text and keeps the template's end.

>>> from llm2embed import Encoder
>>> enc = Encoder.from_pretrained("smollm2-135m", prompt_template="prompteol")  # doctest: +SKIP
>>> enc.pooling_mode, enc.bidirectional                                          # doctest: +SKIP
('last_token', False)
"""

from __future__ import annotations

__all__ = ["PROMPT_TEMPLATES", "TEMPLATE_SETTINGS", "apply_prompt_template", "render_template"]

# the text of one message: a plain string or sentence-transformers' structured [{"type": "text", "text": ...}]
_CONTENT = "(m['content'] if m['content'] is string else m['content'][0]['text'])"

PROMPT_TEMPLATES: dict[str, str] = {
    "prompteol": (
        "{%- for m in messages -%}"
        "{%- if m['role'] == 'system' -%}{{ " + _CONTENT + " }}"
        "{%- else -%}This sentence : \"{{ " + _CONTENT + " }}\" means in one word:\""
        "{%- endif -%}{%- endfor -%}"
    ),
}
# what each template needs from the encoder: pooling, attention, padding side
TEMPLATE_SETTINGS: dict[str, dict[str, object]] = {
    "prompteol": {"pooling_mode": "last_token", "bidirectional": False, "padding_side": "left"},
}
MESSAGE_MODALITY = {"method": "forward", "method_output_name": "last_hidden_state", "format": "flat"}


def _template(name: str) -> str:
    if name not in PROMPT_TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(sorted(PROMPT_TEMPLATES))}")
    return PROMPT_TEMPLATES[name]


def render_template(name: str, text: str, instruction: str = "") -> str:
    """The string the model sees for ``text`` under template ``name`` (for checks and docs).

    >>> render_template("prompteol", "A man plays guitar.")
    'This sentence : "A man plays guitar." means in one word:"'
    """
    from jinja2 import Template

    messages = ([{"role": "system", "content": instruction}] if instruction else []) + \
        [{"role": "user", "content": text}]
    return Template(_template(name)).render(messages=messages)


def apply_prompt_template(transformer, name: str) -> None:
    """Make the sentence-transformers ``Transformer`` module wrap every text in template ``name``."""
    template = _template(name)
    transformer.modality_config = {**transformer.modality_config, "message": dict(MESSAGE_MODALITY)}
    transformer.tokenizer.chat_template = template
    if transformer.processor is not transformer.tokenizer and hasattr(transformer.processor, "chat_template"):
        transformer.processor.chat_template = template
