"""The llm2embed command line: convert, encode, info, --help, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from llm2embed import Encoder
from llm2embed.cli import main


@pytest.mark.parametrize("command", ["convert", "encode", "info", "demo", "eval", "mntp", "simcse", "supervised", "pipeline", "serve"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: llm2embed " + command in capsys.readouterr().out


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "llm2embed.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout and "encode" in out.stdout


def test_convert_encode_info(llama_folder, tmp_path, capsys):
    out = tmp_path / "enc"
    assert main(["convert", llama_folder, str(out), "--pooling", "weighted_mean", "--max-length", "64"]) == 0
    enc = Encoder.from_pretrained(out)
    assert enc.pooling_mode == "weighted_mean" and enc.bidirectional

    (tmp_path / "in.txt").write_text("music\na man plays a guitar\n\n")
    assert main(["encode", str(out), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "e.npy")]) == 0
    emb = np.load(tmp_path / "e.npy")
    np.testing.assert_allclose(emb, enc.encode(["music", "a man plays a guitar", ""]), atol=1e-5)

    rows = [{"text": "music", "id": 1}, {"text": "onion market", "id": 2}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["encode", str(out), "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "e.jsonl"),
                 "--instruction", "query :"]) == 0
    written = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [w["text"] for w in written] == ["music", "onion market"]
    np.testing.assert_allclose(written[1]["embedding"], enc.encode([["query :", "onion market"]])[0], atol=1e-5)

    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["attention"] == "bidirectional" and info["pooling_mode"] == "weighted_mean"
    assert main(["info", str(out), "--causal"]) == 0
    assert "attention            causal" in capsys.readouterr().out


def test_errors_are_clear(tmp_path, llama_folder, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "in.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(SystemExit, match="no 'text' field"):
        main(["encode", llama_folder, "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.npy")])
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(SystemExit, match=r"\.npy or \.jsonl"):
        main(["encode", llama_folder, "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o.csv")])
    assert not (tmp_path / "o.csv").exists()
