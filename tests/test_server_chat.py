"""``/v1/chat/completions`` from the same weights as ``/v1/embeddings`` (tiny dual model with a chat template):
the official openai client, streaming, both endpoints at once, errors in OpenAI's shape, the command line."""

import asyncio
import os

import httpx
import numpy as np
import pytest

from lora_helpers import tiny_chat_encoder
from test_server import assert_openai_error

from llm2embed.dual import DualModel
from llm2embed.server import BackgroundServer, ServeOptions, ServerProcess, add_serve_arguments, create_app

KEY = "chat-key"
NAME = "tiny-dual"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a man plays a guitar"}]


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    return DualModel.from_pretrained(tiny_chat_encoder(tmp_path_factory, "tiny-dual"))


@pytest.fixture(scope="module")
def server(dual):
    options = ServeOptions(api_key=KEY, max_inputs=8, max_total_chars=2000, max_new_tokens=64)
    with BackgroundServer(create_app(dual.encoder, NAME, options, generator=dual)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def chat(server, payload, key=KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/chat/completions", json=payload, headers=headers, timeout=60)


def test_chat_completion_is_the_dual_models_generation(client, dual):
    expected = dual.complete(MESSAGES, max_new_tokens=12, temperature=0)
    response = client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=12, temperature=0)
    choice = response.choices[0]
    assert response.object == "chat.completion" and response.model == NAME
    assert choice.message.role == "assistant" and choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == len(expected.token_ids)
    assert response.usage.total_tokens == expected.prompt_tokens + len(expected.token_ids)
    # text parts and the developer role are accepted
    parts = [{"role": "developer", "content": "be brief"},
             {"role": "user", "content": [{"type": "text", "text": "a man plays "}, {"type": "text", "text": "a guitar"}]}]
    again = client.chat.completions.create(model=NAME, messages=parts, max_tokens=12, temperature=0)
    assert again.choices[0].message.content == expected.text


def test_streaming_gives_the_same_text(client, dual):
    expected = dual.complete(MESSAGES, max_new_tokens=12, temperature=0)
    chunks = list(client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=12, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == expected.finish_reason
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)


def test_stop_strings_cut_the_answer(server, dual):
    full = dual.complete(MESSAGES, max_new_tokens=12, temperature=0).text
    assert len(full) > 4
    stop = full[3:5]
    body = chat(server, {"model": NAME, "messages": MESSAGES, "max_tokens": 12, "temperature": 0, "stop": stop}).json()
    assert body["choices"][0]["message"]["content"] == full[:full.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_both_endpoints_at_once_from_the_same_weights(server, dual):
    texts = [f"a man plays a guitar {i}" for i in range(6)]
    expected_embeddings = dual.embed(texts)
    expected_chat = dual.complete(MESSAGES, max_new_tokens=8, temperature=0).text

    async def fire():
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as http:
            calls = []
            for i in range(6):
                calls.append(http.post(server.url + "/v1/embeddings", json={"model": NAME, "input": texts[i]}))
                calls.append(http.post(server.url + "/v1/chat/completions",
                                       json={"model": NAME, "messages": MESSAGES, "max_tokens": 8, "temperature": 0}))
            return await asyncio.gather(*calls)

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    got = np.array([responses[2 * i].json()["data"][0]["embedding"] for i in range(6)])
    np.testing.assert_allclose(got, expected_embeddings, atol=1e-5)
    assert {responses[2 * i + 1].json()["choices"][0]["message"]["content"] for i in range(6)} == {expected_chat}
    health = httpx.get(server.url + "/health").json()
    assert health["attention"] == "bidirectional" and health["stats"]["chat_requests"] >= 6


@pytest.mark.parametrize("payload, status, param", [
    ({"messages": MESSAGES}, 400, "model"),
    ({"model": "other", "messages": MESSAGES}, 404, "model"),
    ({"model": NAME}, 400, "messages"),
    ({"model": NAME, "messages": []}, 400, "messages"),
    ({"model": NAME, "messages": "hi"}, 400, "messages"),
    ({"model": NAME, "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0]"),
    ({"model": NAME, "messages": [{"role": "user", "content": 3}]}, 400, "messages[0]"),
    ({"model": NAME, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "messages[0]"),
    ({"model": NAME, "messages": MESSAGES, "max_tokens": 65}, 400, "max_tokens"),
    ({"model": NAME, "messages": MESSAGES, "max_completion_tokens": 0}, 400, "max_completion_tokens"),
    ({"model": NAME, "messages": MESSAGES, "temperature": -1}, 400, "temperature"),
    ({"model": NAME, "messages": MESSAGES, "top_p": "x"}, 400, "top_p"),
    ({"model": NAME, "messages": MESSAGES, "n": 2}, 400, "n"),
    ({"model": NAME, "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"model": NAME, "messages": MESSAGES, "stream": "yes"}, 400, "stream"),
    ({"model": NAME, "messages": MESSAGES, "seed": 1.5}, 400, "seed"),
    ({"model": NAME, "messages": [{"role": "user", "content": "x"}] * 9}, 413, "messages"),
    ({"model": NAME, "messages": [{"role": "user", "content": "x" * 2001}]}, 413, "messages"),
])
def test_bad_requests_in_openai_shape(server, payload, status, param):
    assert assert_openai_error(chat(server, payload), status)["param"] == param


def test_auth_context_and_no_chat_without_generator(server, dual):
    assert_openai_error(chat(server, {"model": NAME, "messages": MESSAGES}, key=None), 401, "invalid_api_key")
    assert_openai_error(chat(server, {"model": NAME, "messages": MESSAGES}, key="wrong"), 401, "invalid_api_key")
    long = [{"role": "user", "content": "guitar " * 80}]  # the tiny model has 128 positions
    for stream in (False, True):
        r = chat(server, {"model": NAME, "messages": long, "max_tokens": 60, "stream": stream})
        assert_openai_error(r, 400, "context_length_exceeded")
    with BackgroundServer(create_app(dual.encoder, NAME, ServeOptions())) as embeddings_only:
        r = httpx.post(embeddings_only.url + "/v1/chat/completions", json={"model": NAME, "messages": MESSAGES})
        assert_openai_error(r, 404)


def test_command_line_generate_flag(dual, tmp_path):
    import argparse

    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(["m", "--generate", "--max-new-tokens", "32"])
    assert args.generate is True and args.max_new_tokens == 32
    assert add_serve_arguments(argparse.ArgumentParser()).parse_args(["m"]).generate is False
    folder = dual.spec
    with ServerProcess(folder, "--generate", "--log-level", "warning") as server:
        name = os.path.basename(folder)
        r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                       json={"model": name, "messages": MESSAGES, "max_tokens": 8, "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == dual.complete(MESSAGES, max_new_tokens=8,
                                                                             temperature=0).text
        e = httpx.post(server.url + "/v1/embeddings", json={"model": name, "input": ["a man plays a guitar"]},
                       timeout=60)
        np.testing.assert_allclose(e.json()["data"][0]["embedding"], dual.embed(["a man plays a guitar"])[0],
                                   atol=1e-5)
