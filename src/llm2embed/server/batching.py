"""Dynamic batching: concurrent requests merged into model calls on one model thread, cut with least padding."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .schema import APIError

logger = logging.getLogger("llm2embed.server")

__all__ = ["DynamicBatcher", "FORWARD_OVERHEAD_TOKENS", "forward_batches", "model_thread"]


def model_thread() -> ThreadPoolExecutor:
    """The one thread that should run all of a server's torch work: loading, the probe and every model call.

    Running torch from a second thread (say, the model loaded on the main thread, then encoding on a worker)
    leaves two OpenMP thread pools competing: on the project's 2-core CPU that costs about 12 % of encoding
    throughput for the rest of the process (1.99 -> 1.73 busy cores, measured).
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm2embed-model")


@dataclass
class _Job:
    items: list[tuple[str, str]]          # (prompt, text)
    future: asyncio.Future


class DynamicBatcher:
    """Merges concurrent requests into model calls run one at a time on a worker thread.

    ``encode_fn(items) -> (embeddings, token_counts)`` gets ``(prompt, text)`` pairs. A call takes every
    waiting request up to ``max_batch_size`` texts (always at least one request); when fewer are waiting,
    it waits for more while they keep coming: until none has arrived for ``quiet_ms`` or ``max_wait_ms`` have
    passed. Requests cancelled while waiting (client gone) are skipped. ``encode_fn`` runs on ``executor``
    (one thread; default: a new :func:`model_thread`).

    >>> batcher = DynamicBatcher(encode_fn, max_batch_size=256, max_wait_ms=10)  # doctest: +SKIP
    >>> emb, tokens = await batcher.submit([("", "hello")])                      # doctest: +SKIP
    """

    def __init__(self, encode_fn, max_batch_size: int = 256, max_wait_ms: float = 20.0,
                 quiet_ms: float | None = 5.0, executor: ThreadPoolExecutor | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0 or (quiet_ms is not None and quiet_ms < 0):
            raise ValueError(f"max_wait_ms and quiet_ms must be >= 0, got {max_wait_ms} and {quiet_ms}")
        self.encode_fn = encode_fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait_ms) / 1000.0
        self.quiet = self.max_wait if quiet_ms is None else float(quiet_ms) / 1000.0
        self._pending: collections.deque[_Job] = collections.deque()
        self._pending_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = executor
        self._owns_executor = executor is None
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0, "encode_seconds": 0.0}
        self.recent_batches: collections.deque[int] = collections.deque(maxlen=32)  # texts per model call

    @property
    def pending_texts(self) -> int:
        return self._pending_texts

    @property
    def executor(self) -> ThreadPoolExecutor | None:
        """The model thread the calls run on (set by :meth:`start` when none was given)."""
        return self._executor

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        if self._executor is None:
            self._executor = model_thread()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="llm2embed-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(APIError(503, "the server is shutting down", "server_error"))
        if self._executor is not None and self._owns_executor:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, items: list[tuple[str, str]]) -> tuple[np.ndarray, list[int]]:
        """Queue ``(prompt, text)`` pairs; return their embeddings and token counts."""
        if self._task is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        if self._task.done():
            raise APIError(503, "the encoding worker has stopped", "server_error")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(items, future))
        self._pending_texts += len(items)
        self._wakeup.set()
        return await future

    def _take(self) -> list[_Job]:
        jobs, n = [], 0
        while self._pending and (not jobs or n + len(self._pending[0].items) <= self.max_batch_size):
            job = self._pending.popleft()
            self._pending_texts -= len(job.items)
            if job.future.cancelled():
                continue
            jobs.append(job)
            n += len(job.items)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        answered_at = float("-inf")  # clients answered by a call tend to come back at once: wait for them
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_wait
            gap = self.max_wait if loop.time() - answered_at < self.max_wait else self.quiet
            while self._pending_texts < self.max_batch_size:
                remaining = min(deadline - loop.time(), gap)
                gap = self.quiet
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs = self._take()
            if not jobs:
                continue
            items = [item for job in jobs for item in job.items]
            start = time.perf_counter()
            try:
                embeddings, tokens = await loop.run_in_executor(self._executor, self.encode_fn, items)
            except asyncio.CancelledError:  # stopping: no request is left waiting forever
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(APIError(503, "the server is shutting down", "server_error"))
                raise
            except Exception as exc:  # answer the requests; keep serving
                logger.exception("encoding a batch of %d texts failed", len(items))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.stats["encode_seconds"] += time.perf_counter() - start
            self.stats["batches"] += 1
            self.stats["requests"] += len(jobs)
            self.stats["texts"] += len(items)
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
            self.recent_batches.append(len(items))
            offset = 0
            for job in jobs:
                n = len(job.items)
                if not job.future.done():
                    job.future.set_result((embeddings[offset:offset + n], tokens[offset:offset + n]))
                offset += n
            answered_at = loop.time()


FORWARD_OVERHEAD_TOKENS = 64  # the fixed cost of one forward pass in padded tokens (tuned on a 2-core CPU)


def forward_batches(items: list[tuple[str, str]], lengths: list[int], max_texts: int, max_tokens: int,
                    overhead: int = FORWARD_OVERHEAD_TOKENS) -> list[list[int]]:
    """Split one model call into forward passes (lists of indices into ``items``) with the least padding.

    One prompt per pass; within a prompt the texts are sorted longest first and cut into runs of at most
    ``max_texts`` texts and ``max_tokens`` padded tokens (texts x longest; a longer single text runs alone),
    choosing the cuts that minimise padded tokens + ``overhead`` per pass (dynamic programming over the
    sorted lengths). A merged call mixes requests of all lengths; fixed-size batches would pad many short
    texts to the length of a few long ones.

    >>> forward_batches([("", "t")] * 5, [40, 10, 12, 11, 39], max_texts=32, max_tokens=512, overhead=8)
    [[0, 4], [2, 3, 1]]
    """
    by_prompt: dict[str, list[int]] = {}
    for i in sorted(range(len(items)), key=lambda i: -lengths[i]):
        by_prompt.setdefault(items[i][0], []).append(i)
    batches: list[list[int]] = []
    for order in by_prompt.values():
        sizes = [lengths[i] for i in order]
        n = len(order)
        best = [0.0] + [float("inf")] * n      # best[j]: least cost of the first j texts
        cut = [0] * (n + 1)
        for j in range(1, n + 1):
            for i in range(max(0, j - max_texts), j):  # a pass of texts i..j-1, padded to sizes[i]
                if j - i > 1 and sizes[i] * (j - i) > max_tokens:
                    continue
                cost = best[i] + sizes[i] * (j - i) + overhead
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        runs, j = [], n
        while j > 0:
            runs.append(order[cut[j]:j])
            j = cut[j]
        batches.extend(reversed(runs))
    return batches

