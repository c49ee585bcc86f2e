"""Bulk corpus embedding into Parquet shards, in one process or spread over a Ray cluster (Ray Data).

    llm2embed encode MODEL --input CORPUS --output DIR [--engine local|ray] [--address ADDR] [--workers N]
                           [--gpus-per-worker G] [--shard-rows R]

``CORPUS`` is a ``.txt`` (one text per line), ``.jsonl`` (a ``field`` per line) or ``.parquet`` file, a folder
of them or a glob. Before anything is encoded the driver reads the corpus once: it checks every line (bad
UTF-8, bad JSON and missing fields stop the run with the file and line named), hashes the bytes and cuts
every file into **shards of fixed row ranges** (``shard_rows`` rows, never across files). The cut is recorded
in ``DIR/plan.json`` and each shard becomes one file, ``DIR/shard-00000.parquet``, ..., with the columns

========== ========================================================================================
id         the row's position in the corpus (files in sorted order; a ``.txt`` row is a line, a
           ``.jsonl`` row a non-blank line, a ``.parquet`` row a row), ``int64``
text_hash  sha256 of the text's UTF-8 bytes, hex
embedding  ``fixed_size_list<float32>[dimension]``
text       the text itself (only with ``with_text=True`` / ``--with-text``)
========== ========================================================================================

A shard file is written to a temporary name and renamed into place (``os.replace``), so it exists
complete or not at all. A rerun of the same command reads ``plan.json``, skips the shards whose file is
complete and encodes the rest; a different corpus, model or setting is refused (``overwrite=True`` starts
over). ``DIR/_SUCCESS.json`` is written when every shard is there.

``engine="ray"``: the pending shards become a Ray Dataset (one row per shard) mapped by
``map_batches(ShardEncoder, compute=ActorPoolStrategy(size=workers))``: every worker is a Ray actor that
loads the encoder once and, per shard, reads its rows from the corpus, embeds them with
:meth:`Encoder.encode` (length-sorted batches) and writes the shard file. Ray restarts a killed actor and
retries its shards (Ray Data's actor defaults ``max_restarts=-1``, ``max_task_retries=-1``); a shard
that is written twice is written with the same content under the same name, so the output never holds a
row twice. On several machines the
corpus and ``DIR`` must be on a filesystem every node sees (NFS, a shared volume), and llm2embed installed
on every node. ``engine="local"`` runs the same shards in this process.

>>> from llm2embed.bulk import encode_corpus, read_shards
>>> encode_corpus("smollm2-135m", "corpus/*.jsonl", "out/emb", engine="ray", workers=2)  # doctest: +SKIP
{'rows': 20000, 'shards': 2, 'written': 2, 'skipped': 0, ...}
>>> ids, embeddings = read_shards("out/emb")                                            # doctest: +SKIP
"""

from .engine import ShardEncoder, encode_corpus
from .inputs import InputError, read_texts, resolve_inputs
from .shards import Shard, plan_shards, read_shard_texts, read_shards, text_hash

__all__ = ["InputError", "Shard", "ShardEncoder", "encode_corpus", "plan_shards", "read_shard_texts",
           "read_shards", "read_texts", "resolve_inputs", "text_hash"]
