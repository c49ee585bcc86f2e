"""Load test of ``llm2embed serve``: concurrent clients against the server, compared with offline ``encode``.

    python benchmarks/serve_load.py                         # embedded default, 50 clients x 20 requests
    python benchmarks/serve_load.py --clients 10 --requests 5 --time-limit 60

Starts the server (``python -m llm2embed.server``) on 127.0.0.1 on a free port with the embedded default model
(SmolLM2-135M, bidirectional, fp32), then runs ``--clients`` concurrent clients, each sending ``--requests``
requests one after another, each request 1-8 distinct STS-B sentences (all splits, deduplicated, shuffled
with a fixed seed; no sentence is sent twice, so nothing is answered from a cache). Requests use the
``base64`` encoding the official ``openai`` client asks for. The run is bounded: no request is sent after
``--time-limit`` seconds, requests still in flight then get ``--grace`` seconds more, and the server is
stopped at the end. Then, in this process with the server gone, ``Encoder.encode`` (batch 32) embeds the
same sentences that were served, and the ratio of served to offline sentences/s is printed.

With ``--chat-clients N`` (default 5; 0 turns it off) the server runs with ``--generate`` and N chat clients
send ``--chat-requests`` greedy chat completions of ``--chat-tokens`` tokens each to ``/v1/chat/completions``
at the same time: both endpoints from the same weights; the chat failures are counted too (target 0). Chat
calls share the model thread, so the served/offline ratio of the embeddings drops while they run.

Prints requests/s, served sentences/s, latency p50/p99, failures (any non-200 or transport error; target 0),
the server's batching statistics, the served/offline ratio (target >= 0.8) and the machine's load average
(served and offline run one after the other: other work on the machine skews the ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def stsb_sentences() -> list[str]:
    from llm2embed.public_data import load_stsb

    seen: dict[str, None] = {}
    for split in ("train", "dev", "test"):
        pairs = load_stsb(split)
        for s in pairs.sentences1 + pairs.sentences2:
            if s.strip():
                seen.setdefault(s.strip(), None)
    return list(seen)


def plan_requests(sentences, clients, requests, low, high, seed):
    """Per client, a list of requests; each a list of distinct sentences never sent before."""
    rng = random.Random(seed)
    pool = list(sentences)
    rng.shuffle(pool)
    sizes = [[rng.randint(low, high) for _ in range(requests)] for _ in range(clients)]
    if sum(map(sum, sizes)) > len(pool):
        sys.exit(f"not enough distinct sentences ({len(pool)}) for {sum(map(sum, sizes))} inputs")
    it = iter(pool)
    return [[[next(it) for _ in range(n)] for n in client] for client in sizes]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llm2embed.server", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", "--max-batch-size", str(args.max_batch_size),
           "--max-wait-ms", str(args.max_wait_ms), "--quiet-ms", str(args.quiet_ms),
           "--encode-batch-size", str(args.batch_size), "--encode-batch-tokens", str(args.batch_tokens)]
    if args.chat_clients:  # chat completions from the same weights (a DualModel)
        cmd += ["--generate"]
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("the server exited during start-up:\n" + log_path.read_text()[-3000:])
        try:
            r = httpx.get(url + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    sys.exit(f"the server did not answer /health within {timeout} s")


async def run_clients(url, model_name, plan, time_limit, grace, encoding_format):
    import httpx

    latencies, failures, served, not_sent = [], [], 0, 0
    start = time.monotonic()
    send_deadline = start + time_limit
    limits = httpx.Limits(max_connections=len(plan) + 4, max_keepalive_connections=len(plan) + 4)

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(time_limit + grace)) as http:
        async def client(requests):
            nonlocal served, not_sent
            for i, texts in enumerate(requests):
                if time.monotonic() >= send_deadline:
                    not_sent += len(requests) - i
                    return
                payload = {"model": model_name, "input": texts, "encoding_format": encoding_format}
                t0 = time.monotonic()
                try:
                    r = await asyncio.wait_for(http.post(url + "/v1/embeddings", json=payload),
                                               send_deadline + grace - t0)
                    ok = r.status_code == 200 and len(r.json()["data"]) == len(texts)
                    reason = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except Exception as exc:  # transport error or time-out: a failure, keep going
                    reason = f"{type(exc).__name__}: {exc}"[:200]
                if reason is None:
                    latencies.append(time.monotonic() - t0)
                    served += len(texts)
                else:
                    failures.append(reason)

        await asyncio.gather(*(client(requests) for requests in plan))
    return time.monotonic() - start, latencies, failures, served, not_sent


async def run_chat_clients(url, model_name, questions, clients, requests, max_tokens, time_limit, grace):
    """``clients`` concurrent chat clients, ``requests`` chat completions each (greedy, ``max_tokens``)."""
    import httpx

    latencies, failures, tokens = [], [], 0
    send_deadline = time.monotonic() + time_limit
    async with httpx.AsyncClient(timeout=httpx.Timeout(time_limit + grace)) as http:
        async def client(c):
            nonlocal tokens
            for i in range(requests):
                if time.monotonic() >= send_deadline:
                    return
                question = questions[(c * requests + i) % len(questions)]
                payload = {"model": model_name, "max_tokens": max_tokens, "temperature": 0,
                           "messages": [{"role": "user", "content": f"Say something about: {question}"}]}
                t0 = time.monotonic()
                try:
                    r = await http.post(url + "/v1/chat/completions", json=payload)
                    body = r.json() if r.status_code == 200 else None
                    ok = body is not None and body["choices"][0]["message"]["content"] is not None
                    reason = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except Exception as exc:  # transport error or time-out: a failure, keep going
                    reason = f"{type(exc).__name__}: {exc}"[:200]
                if reason is None:
                    latencies.append(time.monotonic() - t0)
                    tokens += body["usage"]["completion_tokens"]
                else:
                    failures.append(reason)

        await asyncio.gather(*(client(c) for c in range(clients)))
    return {"completed": len(latencies), "failures": failures, "tokens": tokens, "latencies": latencies}


async def run_mixed(url, model_name, plan, args):
    """The embedding clients and (``--chat-clients``) the chat clients at the same time."""
    questions = [s for client in plan for request in client for s in request][::7] or ["hello"]
    chat = run_chat_clients(url, model_name, questions, args.chat_clients, args.chat_requests, args.chat_tokens,
                            args.time_limit, args.grace) if args.chat_clients else asyncio.sleep(0, None)
    embeddings, chat_result = await asyncio.gather(
        run_clients(url, model_name, plan, args.time_limit, args.grace, args.encoding_format), chat)
    return (*embeddings, chat_result)


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--min-sentences", type=int, default=1)
    parser.add_argument("--max-sentences", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=300.0, help="no request is sent after this many s")
    parser.add_argument("--grace", type=float, default=120.0, help="s allowed to requests in flight at the limit")
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--max-batch-size", type=int, default=256)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--quiet-ms", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass, served and offline")
    parser.add_argument("--batch-tokens", type=int, default=512, help="padded tokens per forward pass (served)")
    parser.add_argument("--encoding-format", default="base64", choices=["base64", "float"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat-clients", type=int, default=5,
                        help="concurrent chat clients on /v1/chat/completions (server started with --generate; "
                             "0: embeddings only)")
    parser.add_argument("--chat-requests", type=int, default=4, help="chat completions per chat client")
    parser.add_argument("--chat-tokens", type=int, default=16, help="max_tokens of each chat completion")
    args = parser.parse_args()

    import httpx

    from llm2embed.server import default_model_name

    load_start = os.getloadavg()

    plan = plan_requests(stsb_sentences(), args.clients, args.requests, args.min_sentences, args.max_sentences,
                         args.seed)
    total_requests = sum(map(len, plan))
    total_sentences = sum(len(r) for c in plan for r in c)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = default_model_name(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp, "server.log")
        proc = start_server(args, port, log_path)
        try:
            t0 = time.monotonic()
            health = wait_healthy(url, proc, log_path, args.startup_timeout)
            startup = time.monotonic() - t0
            warm = ["A warm-up sentence.", "Another one, a little longer than the first."] * 4
            httpx.post(url + "/v1/embeddings", json={"model": name, "input": warm}, timeout=600).raise_for_status()
            before = httpx.get(url + "/health", timeout=10).json()["stats"]
            client_cpu = time.process_time()
            elapsed, latencies, failures, served, not_sent, chat = asyncio.run(run_mixed(url, name, plan, args))
            client_cpu = time.process_time() - client_cpu
            after = httpx.get(url + "/health", timeout=30).json()["stats"]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    batches = after["batches"] - before["batches"]
    texts = after["texts"] - before["texts"]
    completed = len(latencies)
    served_rate = served / elapsed

    # offline: the same sentences that were served, in this process, with the server stopped
    from llm2embed import Encoder

    sent = [s for client in plan for request in client for s in request][:max(served, 1)]
    encoder = Encoder.from_pretrained(args.model)
    encoder.encode(warm, batch_size=args.batch_size)
    t0 = time.perf_counter()
    encoder.encode(sent, batch_size=args.batch_size, show_progress_bar=False)
    offline_rate = len(sent) / (time.perf_counter() - t0)

    print(f"model {args.model} ({health['attention']}, dim {health['dimension']}), server start-up {startup:.1f} s, "
          f"cores {os.cpu_count()}")
    print(f"{args.clients} clients x {args.requests} requests of {args.min_sentences}-{args.max_sentences} "
          f"sentences ({total_requests} requests, {total_sentences} sentences planned), "
          f"encoding_format {args.encoding_format}, time limit {args.time_limit:.0f} s")
    print(f"completed {completed}/{total_requests} requests in {elapsed:.1f} s: {completed / elapsed:.2f} requests/s, "
          f"{served_rate:.1f} sentences/s")
    print(f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms")
    print(f"failures {len(failures)}, not sent (time limit) {not_sent}")
    for reason in sorted(set(failures))[:5]:
        print(f"  {failures.count(reason)}x {reason}")
    if chat:
        print(f"chat (same weights, at the same time): {args.chat_clients} clients x {args.chat_requests} requests "
              f"of max_tokens {args.chat_tokens}: completed {chat['completed']}, failures {len(chat['failures'])}, "
              f"{chat['tokens']} tokens, latency p50 {percentile(chat['latencies'], 50) * 1000:.0f} ms, "
              f"p99 {percentile(chat['latencies'], 99) * 1000:.0f} ms")
        for reason in sorted(set(chat["failures"]))[:5]:
            print(f"  {chat['failures'].count(reason)}x {reason}")
    if batches:
        busy = after["encode_seconds"] - before["encode_seconds"]
        server_cpu = after["process_cpu_seconds"] - before["process_cpu_seconds"]
        print(f"server: {batches} model calls, mean {texts / batches:.1f} sentences per call, "
              f"largest {after['largest_batch']}, model busy {busy:.1f} s of {elapsed:.1f} s; "
              f"CPU time: server {server_cpu:.1f} s, clients {client_cpu:.1f} s")
        print(f"last model calls (texts): {after['recent_batches'][-min(batches, 16):]}")
    print(f"offline Encoder.encode (batch {args.batch_size}) on the {len(sent)} served sentences: "
          f"{offline_rate:.1f} sentences/s")
    print(f"served / offline sentences/s: {served_rate / offline_rate:.2f}")
    print("load average (1/5/15 min) at start {:.2f}/{:.2f}/{:.2f}, at end {:.2f}/{:.2f}/{:.2f}".format(
        *load_start, *os.getloadavg()))
    print(json.dumps({"requests_per_s": completed / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
                      "p99_ms": percentile(latencies, 99) * 1000, "failures": len(failures), "not_sent": not_sent,
                      "served_sentences_per_s": served_rate, "offline_sentences_per_s": offline_rate,
                      "ratio": served_rate / offline_rate,
                      "chat_completed": chat["completed"] if chat else 0,
                      "chat_failures": len(chat["failures"]) if chat else 0}))


if __name__ == "__main__":
    main()
