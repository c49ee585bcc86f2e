"""Bulk encoding into Parquet shards: input reading and errors, local shards and resume, Ray Data workers
(equal to single-process encode, every row once, a killed worker retried, an interrupted run resumed)."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm2embed import Encoder
from llm2embed.bulk import InputError, encode_corpus, plan_shards, read_shards, read_texts, resolve_inputs, text_hash
from llm2embed.cli import main

TEXTS = [f"sentence {i} about " + " ".join(["music", "onion", "market", "guitar", "kitchen"][: 1 + i % 5]) * (1 + i % 4)
         for i in range(120)]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, llama_folder):
    path = tmp_path_factory.mktemp("bulk-encoder") / "enc"
    Encoder.from_pretrained(llama_folder).save(path)
    return str(path)


@pytest.fixture(scope="module")
def reference(encoder_dir):
    """Single-process Encoder.encode of TEXTS (the reference every engine must match)."""
    return Encoder.from_pretrained(encoder_dir).encode(TEXTS)


@pytest.fixture()
def ray_cluster(monkeypatch):
    """A local 2-CPU Ray cluster for one test, shut down at its end."""
    import ray  # the `ray` extra, part of `dev`
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def write_corpus(folder):
    """TEXTS split over a .txt, a .jsonl (with blank lines) and a .parquet file, in that (sorted) order."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("\n".join(TEXTS[:50]) + "\n", encoding="utf-8")
    lines = [json.dumps({"text": t, "n": i}) for i, t in enumerate(TEXTS[50:90])]
    lines.insert(7, "   ")
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": TEXTS[90:]}), folder / "c.parquet", row_group_size=7)
    return folder


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def check_complete(folder, reference):
    """Every row exactly once, hashes right, embeddings equal to the single-process reference."""
    ids, emb = read_shards(folder)
    assert ids.tolist() == list(range(len(TEXTS)))  # sorted, so: each id once, none missing
    hashes = read_shards(folder, columns=("id", "text_hash")).column("text_hash").to_pylist()
    assert hashes == [text_hash(t) for t in TEXTS]
    assert cosines(emb, reference).min() >= 0.9999


# ----------------------------------------------------------------------------------------------- reading
def test_reading_file_folder_glob_and_shard_plan(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    assert read_texts(corpus) == TEXTS
    assert read_texts(corpus / "a.txt") == TEXTS[:50]
    assert [p.name for p in resolve_inputs(str(corpus / "*.jsonl"))] == ["b.jsonl"]
    shards, inputs = plan_shards(resolve_inputs(corpus), shard_rows=16)
    # shards never cross files: 50 -> 16,16,16,2; 40 -> 16,16,8; 30 -> 16,14
    assert [s.rows for s in shards] == [16, 16, 16, 2, 16, 16, 8, 16, 14]
    assert [s.first_id for s in shards] == [0, 16, 32, 48, 50, 66, 82, 90, 106]
    assert [i["rows"] for i in inputs] == [50, 40, 30]
    with pytest.raises(InputError, match="does not exist"):
        resolve_inputs(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="matches no file"):
        resolve_inputs(str(tmp_path / "*.tsv"))


def test_unreadable_input_names_file_and_line_for_both_engines(tmp_path, encoder_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nalso fine\nbroken \xff here\n")
    with pytest.raises(InputError, match=r"bad\.txt:3: not valid UTF-8.*0xff"):
        read_texts(bad)
    for output, engine in (("o.npy", "local"), ("shards", "local"), ("ray-shards", "ray")):
        with pytest.raises(SystemExit, match=r"bad\.txt:3: not valid UTF-8"):
            main(["encode", encoder_dir, "--input", str(bad), "--output", str(tmp_path / output),
                  "--engine", engine, "--quiet"])
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "a"}\n\n{"text": "b\xc3"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:3: not valid UTF-8"):
        read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": 5}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: field 'text' is int"):
        read_texts(tmp_path / "bad.jsonl")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: column 'text' is int64"):
        read_texts(tmp_path / "bad.parquet")


# ----------------------------------------------------------------------------------------------- local engine
def test_local_shards_resume_and_refuse_a_different_run(tmp_path, encoder_dir, reference):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "emb"
    assert main(["encode", encoder_dir, "--input", str(corpus), "--output", str(out), "--shard-rows", "16",
                 "--with-text", "--quiet"]) == 0
    check_complete(out, reference)
    assert read_shards(out, columns=("id", "text")).column("text").to_pylist() == TEXTS
    success = json.loads((out / "_SUCCESS.json").read_text())
    assert success["rows"] == len(TEXTS) and success["written"] == 9 and success["dimension"] == 64

    # a shard lost (or never written) is the only one redone; the others keep their files
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    (out / "shard-00004.parquet").unlink()
    summary = encode_corpus(encoder_dir, corpus, out, shard_rows=16, with_text=True, show_progress=False)
    assert (summary["written"], summary["skipped"]) == (1, 8)
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in out.glob("shard-*.parquet") if p.name != "shard-00004.parquet")
    check_complete(out, reference)

    with pytest.raises(InputError, match="different run.*shard_rows"):
        encode_corpus(encoder_dir, corpus, out, shard_rows=32, with_text=True, show_progress=False)
    (corpus / "a.txt").write_text("changed\n")
    with pytest.raises(InputError, match="different run.*inputs"):
        encode_corpus(encoder_dir, corpus, out, shard_rows=16, with_text=True, show_progress=False)
    summary = encode_corpus(encoder_dir, corpus, out, shard_rows=16, overwrite=True, show_progress=False)
    assert summary["rows"] == 1 + 70 and len(list(out.glob("shard-*.parquet"))) == summary["shards"] == 6


# ----------------------------------------------------------------------------------------------- Ray engine
def test_ray_workers_match_single_process_and_survive_a_killed_worker(tmp_path, encoder_dir, reference, ray_cluster):
    import psutil

    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "emb"
    results, killed = [], []

    def kill_first_worker(result):
        results.append(result)
        if not killed:  # the worker that finished the first shard still holds queued shards: kill it mid-run
            worker = psutil.Process(result["pid"])
            assert worker.name().startswith("ray::MapWorker(MapBatches(ShardEncoder))")
            assert worker.pid in {p.pid for p in psutil.Process().children(recursive=True)}
            os.kill(worker.pid, signal.SIGKILL)
            killed.append((worker.pid, len(results)))

    summary = encode_corpus(encoder_dir, corpus, out, engine="ray", workers=2, shard_rows=6,
                            progress=kill_first_worker, show_progress=False)
    total = summary["shards"]
    print(f"killed worker pid {killed[0][0]} after {killed[0][1]} of {total} shards; "
          f"shards written by pids {sorted({r['pid'] for r in results})}; summary {summary}")
    assert killed and killed[0][1] < total
    assert summary["written"] == total == 21 and summary["rows"] == len(TEXTS)
    # 2 workers + the restarted one: Ray restarted the killed actor and retried its shards there
    assert len({r["pid"] for r in results}) >= 3
    assert not list(out.glob(".shard-*"))  # no temporary file left behind
    check_complete(out, reference)


def test_ray_interrupted_run_resumes_without_redoing_complete_shards(tmp_path, encoder_dir, reference, ray_cluster):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "emb"
    seen = []

    def interrupt(result):
        seen.append(result)
        if len(seen) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the driver

    with pytest.raises(KeyboardInterrupt):
        encode_corpus(encoder_dir, corpus, out, engine="ray", workers=2, shard_rows=8, progress=interrupt,
                      show_progress=False)
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    total = len(json.loads((out / "plan.json").read_text())["shards"])
    assert 3 <= len(done) < total and not (out / "_SUCCESS.json").exists()

    # the same command from a second driver (a new process) that joins the running cluster by its address
    address = ray_cluster.get_runtime_context().gcs_address
    run = subprocess.run([sys.executable, "-m", "llm2embed.cli", "encode", encoder_dir, "--input", str(corpus),
                          "--output", str(out), "--engine", "ray", "--address", address, "--workers", "2",
                          "--shard-rows", "8", "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout
    summary = json.loads((out / "_SUCCESS.json").read_text())
    print(f"first run interrupted after {len(done)} of {total} shards; resumed: {printed.strip()}")
    assert summary["skipped"] >= len(done) and summary["written"] == total - summary["skipped"]
    assert f"{summary['written']} written, {summary['skipped']} already complete" in printed
    assert all(os.stat(out / name).st_mtime_ns == mtime for name, mtime in done.items())
    check_complete(out, reference)
