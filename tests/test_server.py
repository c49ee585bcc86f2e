"""The OpenAI-compatible embeddings server on a tiny model: the official openai client, raw HTTP, errors in
OpenAI's shape, limits, API key, dynamic batching, and the command line on loopback."""

import asyncio
import base64
import os
import threading
import time

import httpx
import numpy as np
import pytest

import fastapi  # noqa: E402,F401  (dev dependency)
import uvicorn  # noqa: E402,F401

from llm2embed import Encoder  # noqa: E402
from llm2embed.integrations import set_query_instruction  # noqa: E402
from llm2embed.server import (  # noqa: E402
    BackgroundServer,
    DynamicBatcher,
    ServeOptions,
    ServerProcess,
    add_serve_arguments,
    create_app,
    default_model_name,
    forward_batches,
    model_thread,
)

KEY = "test-key-123"
NAME = "tiny-encoder"
INSTRUCTION = "retrieve passages about music :"
TEXTS = ["a man plays a guitar on the stage", "music", "the cat sat on the mat", "onion market", "x"]
LIMITS = dict(max_inputs=16, max_total_chars=2000, max_body_bytes=64 * 1024)


@pytest.fixture(scope="module")
def saved(llama_folder, tmp_path_factory):
    enc = Encoder.from_pretrained(llama_folder)
    set_query_instruction(enc, INSTRUCTION)
    path = enc.save(tmp_path_factory.mktemp("srv") / NAME)
    return Encoder.from_pretrained(path), str(path)


@pytest.fixture(scope="module")
def server(saved):
    enc, _ = saved
    with BackgroundServer(create_app(enc, NAME, ServeOptions(api_key=KEY, **LIMITS))) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def post(server, payload=None, key=KEY, content=None, headers=None):
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if content is None:
        return httpx.post(server.url + "/v1/embeddings", json=payload, headers=headers, timeout=30)
    return httpx.post(server.url + "/v1/embeddings", content=content, headers=headers, timeout=30)


def assert_openai_error(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def normalized(enc, inputs):
    return enc.encode(inputs, normalize_embeddings=True)


def test_binds_loopback_by_default(server, saved):
    assert ServeOptions().host == "127.0.0.1"
    import argparse

    args = add_serve_arguments(argparse.ArgumentParser()).parse_args(["out/m"])
    assert args.host == "127.0.0.1" and args.port == 8080 and args.api_key is None and args.max_inputs == 2048
    assert server.host == "127.0.0.1"
    assert default_model_name(saved[1] + "/") == NAME  # a folder: its name
    assert default_model_name("org/some-model") == "org/some-model"  # a Hub id or built-in name: itself


def test_openai_client_float_and_base64(client, saved):
    enc, _ = saved
    expected = normalized(enc, TEXTS)
    as_base64 = client.embeddings.create(model=NAME, input=TEXTS)  # the client asks for base64 by default
    as_float = client.embeddings.create(model=NAME, input=TEXTS, encoding_format="float")
    for response in (as_base64, as_float):
        assert response.model == NAME and [d.index for d in response.data] == list(range(len(TEXTS)))
        np.testing.assert_allclose(np.array([d.embedding for d in response.data]), expected, atol=1e-5)
    ids = enc.tokenizer(TEXTS)["input_ids"]
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == sum(map(len, ids))
    single = client.embeddings.create(model=NAME, input="music", encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, expected[1], atol=1e-5)
    assert [m.id for m in client.models.list().data] == [NAME]


def test_dimensions_truncate_and_renormalise(client, saved):
    enc, _ = saved
    full = normalized(enc, TEXTS)
    got = np.array([d.embedding for d in client.embeddings.create(model=NAME, input=TEXTS, dimensions=16).data])
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True), atol=1e-5)


def test_raw_http_float_base64_and_query_input_type(server, saved):
    enc, _ = saved
    r = post(server, {"model": NAME, "input": TEXTS[:2], "encoding_format": "base64"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["object"] == "list" and body["data"][0]["object"] == "embedding"
    vectors = np.array([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    np.testing.assert_allclose(vectors, normalized(enc, TEXTS[:2]), atol=1e-5)
    # extension: input_type "query" applies the model's stored query instruction
    r = post(server, {"model": NAME, "input": ["guitar lessons"], "input_type": "query"})
    np.testing.assert_allclose(r.json()["data"][0]["embedding"],
                               normalized(enc, [[INSTRUCTION, "guitar lessons"]])[0], atol=1e-5)
    r = post(server, {"model": NAME, "input": ["guitar lessons"], "input_type": "document"})
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], normalized(enc, ["guitar lessons"])[0], atol=1e-5)


def test_health_and_models_over_http(server):
    health = httpx.get(server.url + "/health").json()  # no key needed
    assert health["status"] == "ok" and health["model"] == NAME and health["attention"] == "bidirectional"
    assert health["dimension"] == 64
    r = httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert r.json()["data"][0]["id"] == NAME
    r = httpx.get(server.url + f"/v1/models/{NAME}", headers={"Authorization": f"Bearer {KEY}"})
    assert r.json()["id"] == NAME
    assert_openai_error(httpx.get(server.url + "/v1/models/other", headers={"Authorization": f"Bearer {KEY}"}),
                        404, "model_not_found")
    assert_openai_error(httpx.get(server.url + "/v1/nothing-here"), 404)
    assert_openai_error(httpx.get(server.url + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"}), 405)


def test_api_key(server, saved):
    import openai
    assert_openai_error(post(server, {"model": NAME, "input": "a"}, key=None), 401, "invalid_api_key")
    assert_openai_error(post(server, {"model": NAME, "input": "a"}, key="wrong"), 401, "invalid_api_key")
    r = post(server, {"model": NAME, "input": "a"}, key=None, headers={"Authorization": f"Basic {KEY}"})
    assert_openai_error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert_openai_error(httpx.get(server.url + "/v1/models"), 401)
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model=NAME, input="a")
    # no key configured: no header needed
    with BackgroundServer(create_app(saved[0], NAME, ServeOptions())) as open_server:
        assert post(open_server, {"model": NAME, "input": "a"}, key=None).status_code == 200


@pytest.mark.parametrize("payload, param", [
    ({"input": "a"}, "model"),
    ({"model": 3, "input": "a"}, "model"),
    ({"model": NAME}, "input"),
    ({"model": NAME, "input": 5}, "input"),
    ({"model": NAME, "input": []}, "input"),
    ({"model": NAME, "input": ["a", 3]}, "input"),
    ({"model": NAME, "input": ["a", None]}, "input"),
    ({"model": NAME, "input": [1, 2, 3]}, "input"),
    ({"model": NAME, "input": [[1, 2], [3]]}, "input"),
    ({"model": NAME, "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"model": NAME, "input": "a", "dimensions": 0}, "dimensions"),
    ({"model": NAME, "input": "a", "dimensions": 65}, "dimensions"),
    ({"model": NAME, "input": "a", "dimensions": "8"}, "dimensions"),
    ({"model": NAME, "input": "a", "dimensions": True}, "dimensions"),
    ({"model": NAME, "input": "a", "input_type": "passages"}, "input_type"),
])
def test_wrong_types_are_400(server, payload, param):
    assert assert_openai_error(post(server, payload), 400)["param"] == param


def test_malformed_json_is_400(server):
    for content in (b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"'):
        assert_openai_error(post(server, content=content, headers={"Content-Type": "application/json"}), 400)


def test_limits_are_413(server, client):
    import openai
    assert_openai_error(post(server, {"model": NAME, "input": ["a"] * 17}), 413, "too_many_inputs")
    assert post(server, {"model": NAME, "input": ["a"] * 16}).status_code == 200
    assert_openai_error(post(server, {"model": NAME, "input": ["y" * 1001, "z" * 1000]}), 413, "too_many_characters")
    assert_openai_error(post(server, content=b"{" + b" " * (64 * 1024) + b"}"), 413, "body_too_large")
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model=NAME, input=["a"] * 17)
    assert info.value.status_code == 413


def test_unknown_model_is_404(server):
    assert_openai_error(post(server, {"model": "text-embedding-3-small", "input": "a"}), 404, "model_not_found")


def test_concurrent_requests_are_batched(saved):
    enc, _ = saved
    # a long wait for company, ended as soon as all 24 texts are there, makes the merge deterministic
    requests = [[f"{TEXTS[i % len(TEXTS)]} {i}"] * (1 + i % 3) for i in range(12)]
    app = create_app(enc, NAME, ServeOptions(max_wait_ms=5000, max_batch_size=sum(map(len, requests))))

    async def fire(url):
        async with httpx.AsyncClient(timeout=30) as http:
            return await asyncio.gather(*[
                http.post(url + "/v1/embeddings", json={"model": NAME, "input": texts}) for texts in requests])

    with BackgroundServer(app) as srv:
        responses = asyncio.run(fire(srv.url))
        stats = httpx.get(srv.url + "/health").json()["stats"]
    for texts, r in zip(requests, responses):
        assert r.status_code == 200
        np.testing.assert_allclose([d["embedding"] for d in r.json()["data"]], normalized(enc, texts), atol=1e-5)
    assert stats["requests"] == 12 and stats["batches"] <= 2 and stats["largest_batch"] >= 12


def test_dynamic_batcher_limits_and_skips_cancelled():
    calls = []

    def encode_fn(items):
        calls.append([t for _, t in items])
        time.sleep(0.05)
        return np.arange(len(items), dtype=np.float32)[:, None], [1] * len(items)

    async def scenario():
        batcher = DynamicBatcher(encode_fn, max_batch_size=4, max_wait_ms=20)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([("", "a")]))
        await asyncio.sleep(0)
        jobs = [asyncio.ensure_future(batcher.submit([("", f"b{i}"), ("", f"c{i}")])) for i in range(4)]
        gone = asyncio.ensure_future(batcher.submit([("", "cancelled")]))
        await asyncio.sleep(0)
        gone.cancel()
        results = await asyncio.gather(first, *jobs)
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(scenario())
    assert all(len(c) <= 4 for c in calls) and not any("cancelled" in c for c in calls)
    assert sorted(t for c in calls for t in c) == sorted(["a"] + [f"{x}{i}" for i in range(4) for x in "bc"])
    assert [len(r[0]) for r in results] == [1, 2, 2, 2, 2]
    assert stats["requests"] == 5 and stats["texts"] == 9


def test_lone_request_waits_only_the_quiet_gap():
    async def scenario():
        batcher = DynamicBatcher(lambda items: (np.zeros((len(items), 1), np.float32), [1] * len(items)),
                                 max_batch_size=256, max_wait_ms=10_000, quiet_ms=5)
        batcher.start()
        start = time.monotonic()
        await batcher.submit([("", "alone")])
        waited = time.monotonic() - start
        await batcher.stop()
        return waited

    assert asyncio.run(scenario()) < 2.0  # not the 10 s max_wait: nobody else kept arriving


def test_forward_batches_least_padding():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(4, 50, size=120)]
    items = [("", f"t{i}") for i in range(120)]
    batches = forward_batches(items, lengths, max_texts=32, max_tokens=512)
    assert sorted(i for b in batches for i in b) == list(range(120))
    assert all(len(b) <= 32 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 512) for b in batches)
    assert all(lengths[b[0]] == max(lengths[i] for i in b) for b in batches)

    def padded(bs):
        return sum(len(b) * max(lengths[i] for i in b) for b in bs)

    order = sorted(range(120), key=lambda i: -lengths[i])
    fixed = [order[i:i + 32] for i in range(0, 120, 32)]  # fixed-size batches of the sorted texts
    assert padded(batches) < 0.9 * padded(fixed)
    assert padded(batches) <= 1.15 * sum(lengths)
    # one prompt per forward pass; a text over the token budget runs alone
    mixed = [("q\n", "a"), ("", "b"), ("q\n", "c"), ("", "d")]
    assert sorted(map(sorted, forward_batches(mixed, [5, 6, 7, 600], 32, 512))) == [[0, 2], [1], [3]]


def test_all_torch_work_on_the_model_thread(saved):
    enc, _ = saved
    seen = set()

    class Recording:
        def __getattr__(self, name):
            return getattr(enc, name)

        def probe(self):
            seen.add(threading.current_thread().name)
            return enc.probe()

        def encode(self, *args, **kwargs):
            seen.add(threading.current_thread().name)
            return enc.encode(*args, **kwargs)

    executor = model_thread()
    try:
        with BackgroundServer(create_app(Recording(), NAME, ServeOptions(), executor=executor)) as srv:
            assert httpx.post(srv.url + "/v1/embeddings", json={"model": NAME, "input": "a"}).status_code == 200
    finally:
        executor.shutdown()
    assert len(seen) == 1 and next(iter(seen)).startswith("llm2embed-model")


def test_command_line_server(saved, tmp_path):
    _, path = saved
    env = dict(os.environ, LLM2EMBED_API_KEY=KEY)
    with ServerProcess(path, "--log-level", "warning", env=env) as server:
        url = server.url
        r = httpx.post(url + "/v1/embeddings", json={"model": NAME, "input": ["hello"]},
                       headers={"Authorization": f"Bearer {KEY}"})  # the key came from $LLM2EMBED_API_KEY
        assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 64
        assert post_status(url, path) == 200  # the path given on the command line is accepted as the model id
        assert httpx.post(url + "/v1/embeddings", json={"model": NAME, "input": "a"}).status_code == 401
    assert server.proc.returncode is not None


def post_status(url, model):
    return httpx.post(url + "/v1/embeddings", json={"model": model, "input": "a"},
                      headers={"Authorization": f"Bearer {KEY}"}).status_code


def test_json_error_body_for_internal_failure(saved):
    enc, _ = saved

    class Broken:
        def __getattr__(self, name):
            return getattr(enc, name)

        def encode(self, *args, **kwargs):
            raise RuntimeError("boom")

    with BackgroundServer(create_app(Broken(), NAME, ServeOptions())) as srv:
        r = httpx.post(srv.url + "/v1/embeddings", json={"model": NAME, "input": "a"})
        error = assert_openai_error(r, 500)
        assert error["type"] == "server_error" and "boom" in error["message"]
        assert httpx.post(srv.url + "/v1/embeddings", json={"model": NAME, "input": "a"}).status_code == 500
        assert httpx.get(srv.url + "/health").json()["status"] == "ok"  # the worker survived
