"""LlamaIndex on one DualModel: DualModelEmbedding == embed, DualModelLLM == generate (chat, complete, streams),
and the example builds an index and answers through a query engine with the same weights, offline."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lora_helpers import tiny_chat_encoder

pytest.importorskip("llama_index.core", reason="dev dependency")  # the [llamaindex] extra is part of dev

from llama_index.core.base.llms.types import ChatMessage  # noqa: E402

from llm2embed.dual import DualModel  # noqa: E402
from llm2embed.llamaindex import DualModelEmbedding, DualModelLLM, llamaindex_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTION = "retrieve passages about music :"
TEXTS = ["a man plays a guitar on the stage", "the cat sat on the mat", "the market fell on monday"]


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    folder = tiny_chat_encoder(tmp_path_factory, "li-dual", instruction=INSTRUCTION,
                               positions=1024)  # room for LlamaIndex's prompt
    return DualModel.from_pretrained(folder)


def test_embedding_wrapper_is_embed(dual):
    embed_model = DualModelEmbedding(dual)
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(TEXTS), dual.embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(embed_model.get_query_embedding("guitar lessons"),
                               dual.embed(["guitar lessons"], kind="query")[0], atol=1e-6)
    assert not np.allclose(embed_model.get_query_embedding("guitar lessons"), dual.embed(["guitar lessons"])[0])


def test_llm_wrapper_is_generate(dual):
    llm = DualModelLLM(dual, max_new_tokens=10, temperature=0)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a man plays"}]
    expected = dual.complete(messages, max_new_tokens=10, temperature=0).text
    reply = llm.chat([ChatMessage(role=m["role"], content=m["content"]) for m in messages])
    assert reply.message.content == expected and reply.message.role.value == "assistant"
    assert "".join(r.delta for r in llm.stream_chat([ChatMessage(role=m["role"], content=m["content"])
                                                     for m in messages])) == expected
    single = dual.complete("the cat sat", max_new_tokens=10, temperature=0).text
    assert llm.complete("the cat sat").text == single
    streamed = list(llm.stream_complete("the cat sat"))
    assert streamed[-1].text == single and "".join(r.delta for r in streamed) == single
    assert llm.metadata.is_chat_model and llm.metadata.context_window == 1024 and llm.metadata.num_output == 10
    embed_model, llm2 = llamaindex_models(dual, max_new_tokens=4)
    assert embed_model._dual is dual and llm2._dual is dual


def test_example_indexes_and_answers_with_the_same_model(dual, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("rag_llamaindex", ROOT / "examples/rag_llamaindex.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    articles = example.held_out_sample(8, 30)
    index = example.build_index(DualModelEmbedding(dual), articles)
    queries = [a[2] for a in articles if a[2]][:3]
    calls = []
    original = dual.complete

    def recording(messages, **kwargs):
        result = original(messages, **kwargs)
        calls.append((messages, result.text))
        return result

    monkeypatch.setattr(dual, "complete", recording)
    answers = example.answer(index, DualModelLLM(dual, max_new_tokens=6, temperature=0), queries, top_k=2)
    assert len(calls) == len(queries) == len(answers)
    retrieved = example.retrieve(index, queries, top_k=2)
    for (query, text, titles), (messages, generated), (_, hits) in zip(answers, calls, retrieved):
        assert text == generated.strip()                       # the query engine's answer is ours
        assert titles == [title for title, _, _ in hits]       # from the passages our embeddings retrieved
        prompt = " ".join(m["content"] for m in messages)
        assert query in prompt and all(passage[:40] in prompt for _, _, passage in hits)

    monkeypatch.undo()
    results = example.main(["--model", dual.spec, "--articles", "8", "--top-k", "2", "--max-words", "30",
                            "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert len(results) == 5 and out.count("\n  A: ") == 5 and "Answers (LlamaIndex query engine" in out
