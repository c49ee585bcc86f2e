"""The anchor: the official llm2vec 0.2.3, run on the same machine in the same run as llm2embed.

The benchmarks compare against the official tool measured right before or after ours, never against constants
measured once on another machine. This module provides the pieces (all cached, so only the first call is slow):

* :func:`anchor_python` builds a separate virtual environment (default ``.cache/anchor-venv`` under the repo
  root, or ``$LLM2EMBED_ANCHOR_VENV``) with ``torch==2.13.0 llm2vec==0.2.3 "peft<0.14" scipy`` (transformers
  4.44.2), stamped so that a second call only checks the stamp;
* :func:`anchor_model` turns the embedded SmolLM2 (the folder ``llm2embed.resolve_model`` converts) into a
  folder transformers 4.44 reads: ``rope_theta`` at the top level of ``config.json``, BPE merges as ``"a b"``
  strings, and a ``tokenizer_config.json`` with ``model_input_names`` (weights are linked, not copied);
* :func:`experiments_dir` finds the official training scripts (``run_mntp.py``, ``run_simcse.py``) in
  ``../shared/anchors/llm2vec-0.2.3/experiments`` next to the repo, or under ``$LLM2EMBED_ANCHORS_DIR``; they
  are run from there and never copied into this repository;
* :func:`run_snippet` / :func:`run_script` run Python code or one of those scripts in the anchor venv as a
  subprocess and return wall time, peak RSS (``wait4`` of that process) and, for training scripts, the time
  and loss at every optimizer step (a timing callback is registered before the script builds its Trainer).

>>> from anchor import anchor_model, run_snippet                              # doctest: +SKIP
>>> model = anchor_model("smollm2-135m")                                      # doctest: +SKIP
>>> run = run_snippet("import json, os, torch; json.dump({'threads': torch.get_num_threads()}, "
...                   "open(os.environ['ANCHOR_RESULT'], 'w'))")              # doctest: +SKIP
>>> run.result["threads"], run.wall_s, run.peak_rss_mb                      # doctest: +SKIP
(2, 3.1, 402.0)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ANCHOR_PACKAGES", "AnchorError", "AnchorRun", "anchor_config", "anchor_model", "anchor_python",
    "anchors_dir", "experiments_dir", "repo_root", "run_script", "run_snippet", "step_figures",
]

ANCHOR_PACKAGES = ("torch==2.13.0", "llm2vec==0.2.3", "peft<0.14", "scipy")
_MODEL_RECIPE = 1  # bump when the model edits below change, to rebuild cached folders
_STAMP = ".llm2embed-anchor.json"


class AnchorError(RuntimeError):
    """The official tool could not be set up or failed; the message says what and where."""


def repo_root() -> Path:
    """The repository root (the folder that holds ``benchmarks/``)."""
    return Path(__file__).resolve().parent.parent


def _cache() -> Path:
    return repo_root() / ".cache"


@contextlib.contextmanager
def _locked(name: str):
    """An exclusive lock under ``.cache/``, so two benchmarks never build the same thing at once."""
    _cache().mkdir(parents=True, exist_ok=True)
    with open(_cache() / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- the venv

def anchor_python(venv: str | os.PathLike | None = None, packages=ANCHOR_PACKAGES, quiet: bool = False) -> Path:
    """The Python of the anchor venv, built (once) with ``packages``; later calls only read the stamp.

    ``venv`` defaults to ``$LLM2EMBED_ANCHOR_VENV`` or ``<repo>/.cache/anchor-venv``; the venv is made from
    ``$LLM2EMBED_ANCHOR_BASE_PYTHON`` or the running interpreter. Raises :class:`AnchorError` if pip fails.
    """
    venv = Path(venv or os.environ.get("LLM2EMBED_ANCHOR_VENV") or _cache() / "anchor-venv")
    python = venv / "bin" / "python"
    wanted = {"packages": list(packages)}
    if python.exists() and _read_stamp(venv) == wanted:
        return python
    with _locked("anchor-venv"):
        if python.exists() and _read_stamp(venv) == wanted:
            return python
        base = os.environ.get("LLM2EMBED_ANCHOR_BASE_PYTHON") or sys.executable
        print(f"[anchor] building the official tool's venv in {venv} (once): pip install {' '.join(packages)}",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        (venv / _STAMP).unlink(missing_ok=True)
        steps = [] if python.exists() else [[base, "-m", "venv", str(venv)]]
        steps.append([str(python), "-m", "pip", "install", *(["-q"] if quiet else []), *packages])
        for cmd in steps:
            done = subprocess.run(cmd)
            if done.returncode:
                raise AnchorError(f"building the anchor venv failed ({' '.join(cmd)} exited {done.returncode}); "
                                  f"delete {venv} to start over")
        (venv / _STAMP).write_text(json.dumps(wanted))
        print(f"[anchor] venv ready in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return python


# --------------------------------------------------------------------------------------------- the model

def _fingerprint(folder: Path) -> dict:
    out = {"source": str(folder.resolve()), "recipe": _MODEL_RECIPE}
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        st = (folder / name).stat()
        out[name] = [st.st_size, int(st.st_mtime)]
    return out


def _merge_strings(merges: list) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def anchor_model(spec: str = "smollm2-135m", out: str | os.PathLike | None = None) -> Path:
    """A copy of the model ``spec`` (an embedded name or a folder, via ``llm2embed.resolve_model``) that
    transformers 4.44 reads; cached under ``<repo>/.cache/anchor-models/`` and rebuilt when the source changes.

    Edits (shared/anchors/README.md): ``rope_parameters.rope_theta`` moved to a top-level ``rope_theta``;
    ``tokenizer.json`` merges as ``"a b"`` strings; ``tokenizer_config.json`` with the special tokens and
    ``model_input_names: ["input_ids", "attention_mask"]``. ``model.safetensors`` is a symlink to the source.
    """
    from llm2embed import resolve_model

    source = Path(resolve_model(spec))
    if not (source / "config.json").is_file():
        raise AnchorError(f"{spec!r} resolved to {source}, which has no config.json (a Hub id cannot be used here)")
    out = Path(out or _cache() / "anchor-models" / source.name)
    wanted = _fingerprint(source)
    if _read_stamp(out) == wanted and (out / "model.safetensors").exists():
        return out
    with _locked("anchor-models"):
        if _read_stamp(out) == wanted and (out / "model.safetensors").exists():
            return out
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
        try:
            config = json.loads((source / "config.json").read_text())
            rope = config.pop("rope_parameters", None) or {}
            if "rope_theta" not in config and "rope_theta" in rope:
                config["rope_theta"] = rope["rope_theta"]
            if rope.get("rope_type", "default") != "default":
                raise AnchorError(f"{source}: rope_type {rope['rope_type']!r} has no transformers 4.44 form here")
            (tmp / "config.json").write_text(json.dumps(config, indent=2))

            tok = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
            if tok.get("model", {}).get("type") == "BPE":
                tok["model"]["merges"] = _merge_strings(tok["model"].get("merges", []))
            (tmp / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")

            (tmp / "tokenizer_config.json").write_text(json.dumps({
                "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "model_max_length": 8192,
                "model_input_names": ["input_ids", "attention_mask"]}, indent=2))
            os.symlink((source / "model.safetensors").resolve(), tmp / "model.safetensors")
            (tmp / _STAMP).write_text(json.dumps(wanted))
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                shutil.rmtree(out)
            if tmp.parent != out.parent:
                shutil.move(str(tmp), str(out))
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


# --------------------------------------------------------------------------------------------- the scripts

def anchors_dir() -> Path:
    """``$LLM2EMBED_ANCHORS_DIR``, else ``../shared/anchors`` next to the repo root (not checked here)."""
    explicit = os.environ.get("LLM2EMBED_ANCHORS_DIR")
    return Path(explicit).expanduser() if explicit else repo_root().parent / "shared" / "anchors"


def experiments_dir() -> Path:
    """The folder holding the official ``run_mntp.py`` and ``run_simcse.py``; :class:`AnchorError` naming the
    paths tried when it is missing."""
    base = anchors_dir()
    tried = [base / "llm2vec-0.2.3" / "experiments", base / "experiments", base]
    for folder in tried:
        if (folder / "run_mntp.py").is_file() and (folder / "run_simcse.py").is_file():
            return folder
    raise AnchorError("the official llm2vec 0.2.3 scripts (run_mntp.py, run_simcse.py) were not found; looked in "
                      + ", ".join(str(p) for p in tried)
                      + ". Put shared/anchors next to the repo or set LLM2EMBED_ANCHORS_DIR (or use --skip-official)")


def anchor_config(name: str, **overrides) -> dict:
    """The reference settings ``<anchors>/configs/<name>.json`` (e.g. ``mntp_smol``) with ``overrides``
    applied (a ``None`` override removes the key)."""
    path = anchors_dir() / "configs" / f"{name}.json"
    if not path.is_file():
        raise AnchorError(f"reference config {path} not found (set LLM2EMBED_ANCHORS_DIR, or use --skip-official)")
    config = json.loads(path.read_text())
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


# --------------------------------------------------------------------------------------------- running

@dataclass
class AnchorRun:
    """One subprocess in the anchor venv: exit code, wall time (s), peak RSS (MB, of that process and the
    children it waited for), the JSON it wrote to ``$ANCHOR_RESULT`` (if any), per-step records (training
    scripts: ``{"step", "time", "loss"?}``) and the last lines of its output."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    result: dict | None = None
    steps: list[dict] = field(default_factory=list)
    tail: str = ""


# Runs inside the anchor venv: registers a callback that every Trainer picks up (transformers adds
# DEFAULT_CALLBACKS to each one it builds), then runs the script as __main__.
_SCRIPT_BOOTSTRAP = r"""
import json, os, runpy, sys, time
import transformers.trainer as _trainer
from transformers import TrainerCallback

class _StepClock(TrainerCallback):
    def __init__(self, path):
        self.fh = open(path, "a", buffering=1)
    def on_step_end(self, args, state, control, **kw):
        self.fh.write(json.dumps({"step": state.global_step, "time": time.perf_counter()}) + "\n")
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.fh.write(json.dumps({"step": state.global_step, "loss": logs["loss"]}) + "\n")
            print(f"anchor-step {state.global_step:3d}  loss {logs['loss']:.4f}", flush=True)

_trainer.DEFAULT_CALLBACKS.append(_StepClock(os.environ["ANCHOR_STEPS"]))
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
"""


def _run(argv: list[str], env: dict | None, cwd, echo: bool | str, tmp: Path) -> AnchorRun:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp / "hf-datasets"),
                "ANCHOR_RESULT": str(tmp / "result.json"), "ANCHOR_STEPS": str(tmp / "steps.jsonl"),
                **(env or {})}
    full_env.pop("PYTHONPATH", None)  # the project's packages must not leak into the anchor venv
    tail: list[str] = []
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                            text=True, errors="replace")
    try:
        for line in proc.stdout:
            if echo is True or (echo == "losses" and line.startswith("anchor-step ")):
                sys.stdout.write("[official] " + line)
                sys.stdout.flush()
            tail.append(line)
            del tail[:-40]
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    result_file, steps_file = tmp / "result.json", tmp / "steps.jsonl"
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    steps = [json.loads(line) for line in steps_file.read_text().splitlines()] if steps_file.is_file() else []
    return AnchorRun(proc.returncode, wall, usage.ru_maxrss / 1024, result, steps, "".join(tail))


def _checked(run: AnchorRun, what: str, check: bool) -> AnchorRun:
    if check and run.returncode:
        raise AnchorError(f"the official {what} exited {run.returncode}; its last output:\n{run.tail}")
    return run


def run_snippet(code: str, *, args=(), env: dict | None = None, cwd=None, echo: bool | str = False,
                check: bool = True) -> AnchorRun:
    """Run Python ``code`` (with ``sys.argv[1:] == args``) in the anchor venv; the code may write a JSON
    object to ``os.environ["ANCHOR_RESULT"]``, returned as ``.result``. ``echo=True`` shows its output."""
    python = anchor_python()
    with tempfile.TemporaryDirectory(prefix="anchor-") as tmp:
        run = _run([str(python), "-c", code, *map(str, args)], env, cwd, echo, Path(tmp))
    return _checked(run, "snippet", check)


def run_script(script: str | os.PathLike, *, args=(), env: dict | None = None, cwd=None,
               echo: bool | str = "losses", check: bool = True) -> AnchorRun:
    """Run an official script (a path, or a name in :func:`experiments_dir`) in the anchor venv with a
    step clock: ``.steps`` holds the time of every optimizer step's end and every logged loss. ``echo``:
    ``"losses"`` prints one line per logged loss, ``True`` all its output, ``False`` nothing (the last
    lines are in ``.tail`` and in the error when it fails).

    >>> run = run_script("run_mntp.py", args=["/tmp/mntp.json"])               # doctest: +SKIP
    >>> step_figures(run, warmup=3, steps=20)["s_per_step"]                  # doctest: +SKIP
    5.2
    """
    path = Path(script)
    if not path.is_file():
        path = experiments_dir() / script
    python = anchor_python()
    with tempfile.TemporaryDirectory(prefix="anchor-") as tmp:
        run = _run([str(python), "-c", _SCRIPT_BOOTSTRAP, str(path), *map(str, args)], env, cwd, echo, Path(tmp))
    return _checked(run, path.name, check)


def step_figures(run: AnchorRun, warmup: int, steps: int) -> dict:
    """Seconds per step over steps ``warmup+1 .. warmup+steps`` (timed from the end of step ``warmup >= 1``,
    as the benchmarks time ours), and the loss logged at each step, from a :func:`run_script` result."""
    times = {r["step"]: r["time"] for r in run.steps if "time" in r}
    losses = {r["step"]: r["loss"] for r in run.steps if "loss" in r}
    end = warmup + steps
    if warmup < 1 or warmup not in times or end not in times:
        raise AnchorError(f"the official run logged {len(times)} steps; timing needs steps {warmup} (>= 1) and {end}")
    return {"s_per_step": (times[end] - times[warmup]) / steps, "losses": losses}
