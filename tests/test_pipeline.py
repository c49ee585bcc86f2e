"""The pipeline: end to end on a tiny model, skip on rerun, resume after a kill, invalidate downstream only."""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from llm2embed import Encoder
from llm2embed.cli import main
from llm2embed.pipeline import default_config, load_pipeline_config, run_pipeline, stage_keys

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_pipeline(tmp_path, llama_folder):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man plays a guitar on the stage number {i} and the woman slices an onion"
                                for i in range(80)))
    sts = tmp_path / "pairs.jsonl"
    sts.write_text("\n".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) for a, b, s in [
        ("a man plays a guitar", "a man plays music", 4.0), ("the cat sat", "onion market", 0.5),
        ("music lessons", "guitar lessons", 3.0), ("the woman slices an onion", "a woman cuts an onion", 4.5)]))
    common = {"max_steps": 3, "stop_after_n_steps": 3, "save_steps": 2, "use_cpu": True, "disable_tqdm": True,
              "lora_r": 4, "learning_rate": 1e-3, "logging_steps": 1}
    config = default_config("llm2vec")
    config.update(model=llama_folder, output=str(tmp_path / "run"))
    config["mntp"] = {"train_file": str(corpus), "max_seq_length": 16, "per_device_train_batch_size": 4, **common}
    config["simcse"] = {"dataset_file_path": str(corpus), "max_seq_length": 16, "per_device_train_batch_size": 8,
                        **common}
    config["evaluation"] = {"stage_tasks": [f"sts:{sts}"], "final_tasks": [f"sts:{sts}"], "baselines": [],
                            "reduced_precision": "bfloat16"}
    return config


def test_end_to_end_skip_and_invalidate(tiny_pipeline, tmp_path):
    messages = []
    summary = run_pipeline(tiny_pipeline, echo=messages.append)
    run = tmp_path / "run"
    assert summary["final"] == str(run / "simcse/encoder")
    assert (run / "mntp/encoder/modules.json").is_file() and (run / "simcse/encoder/modules.json").is_file()
    assert (run / "report/report.md").is_file() and (run / "report/results.json").is_file()
    assert (run / "report/report.png").is_file()
    stage_models = json.loads((run / "report/results.json").read_text())["models"]
    assert set(stage_models) == {str(run / "simcse/encoder"), str(run / "mntp/encoder"),
                                 f"{run / 'simcse/encoder'}:bfloat16"}
    gap = summary["evaluation"]["reduced_precision"]
    task = next(iter(gap))
    assert gap[task]["float32"] == stage_models[str(run / "simcse/encoder")]["scores"][task]["spearman"]
    assert gap[task]["difference"] == pytest.approx(gap[task]["bfloat16"] - gap[task]["float32"])

    messages.clear()
    run_pipeline(tiny_pipeline, echo=messages.append)
    assert sum("skipped" in m for m in messages) == 2

    moved = dict(tiny_pipeline, output=str(tmp_path / "moved"))  # a copied run folder keeps its finished stages
    shutil.copytree(run, tmp_path / "moved")
    messages.clear()
    assert run_pipeline(moved, echo=messages.append, evaluate=False)["final"] == str(tmp_path / "moved/simcse/encoder")
    assert sum("done earlier" in m for m in messages) == 2

    # another pooling for the encoder handed out: no retraining, the final encoder is the re-pooled sibling
    pooled = dict(tiny_pipeline, encoder_pooling_mode="mean+last_token")
    messages.clear()
    summary = run_pipeline(pooled, echo=messages.append)
    assert sum("done earlier" in m for m in messages) == 2
    assert summary["final"] == str(run / "simcse/encoder_mean+last_token")
    # the report scores the hand-out next to the trained stages, and its reduced-precision twin
    stage_models = json.loads((run / "report/results.json").read_text())["models"]
    assert {summary["final"], f"{summary['final']}:bfloat16", str(run / "simcse/encoder")} <= set(stage_models)
    assert summary["evaluation"]["reduced_precision"][task]["float32"] == \
        stage_models[summary["final"]]["scores"][task]["spearman"]
    assert summary["final"] in json.loads((run / "report/final/results.json").read_text())["models"]
    trained = Encoder.from_pretrained(run / "simcse/encoder")
    handed_out = Encoder.from_pretrained(summary["final"])
    assert handed_out.pooling_mode == "mean+last_token" and trained.pooling_mode == "mean"
    np.testing.assert_allclose(handed_out.encode(["a man plays"])[:, :trained.embedding_dimension],
                               trained.encode(["a man plays"]), atol=1e-5)

    for stage, _cfg, key, legacy in stage_keys(tiny_pipeline, run):  # markers of older versions are upgraded
        marker = run / stage / "llm2embed_stage.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "key": legacy}))
    messages.clear()
    run_pipeline(tiny_pipeline, echo=messages.append, evaluate=False)
    assert sum("done earlier" in m for m in messages) == 2
    assert json.loads((run / "simcse/llm2embed_stage.json").read_text())["key"] == key != legacy

    changed = json.loads(json.dumps(tiny_pipeline))
    changed["simcse"]["learning_rate"] = 5e-4
    messages.clear()
    run_pipeline(changed, echo=messages.append, evaluate=False)
    assert any("mntp: done earlier" in m for m in messages)
    assert any("simcse: running" in m for m in messages)

    changed["mntp"]["mlm_probability"] = 0.4  # upstream change: both stages run again
    messages.clear()
    run_pipeline(changed, echo=messages.append, evaluate=False)
    assert any("mntp: running" in m for m in messages) and any("simcse: running" in m for m in messages)


def test_data_parallel_stages_under_torchrun(tiny_pipeline, tmp_path):
    """``nproc=2`` trains each stage in two gloo processes; the chain and the markers are as with one."""
    summary = run_pipeline(tiny_pipeline, evaluate=False, nproc=2, echo=lambda _m: None)
    run = tmp_path / "run"
    assert summary["final"] == str(run / "simcse/encoder")
    for stage in ("mntp", "simcse"):
        assert json.loads((run / stage / "llm2embed_stage.json").read_text())["complete"] is True
        assert json.loads((run / stage / "stage_config.json").read_text())["output_dir"] == str(run / stage)
    meta = json.loads((run / "simcse/llm2embed_contrastive.json").read_text())
    assert meta["global_step"] == 3 and meta["mntp_adapter"] == str(run / "mntp")
    assert (run / "simcse/encoder/modules.json").is_file()


def test_accelerator_defaults_only_on_cuda_and_never_over_the_config():
    from llm2embed.pipeline import accelerator_defaults

    assert accelerator_defaults({"learning_rate": 1e-4}, cuda=False) == {"learning_rate": 1e-4}
    gpu = accelerator_defaults({"learning_rate": 1e-4, "gradient_checkpointing": False}, cuda=True)
    assert gpu == {"learning_rate": 1e-4, "bf16": True, "gradient_checkpointing": False,
                   "attn_implementation": "flash_attention_2"}


def test_killed_run_resumes_without_redoing_finished_stages(tiny_pipeline, tmp_path, monkeypatch):
    from llm2embed.training import contrastive

    real = contrastive.train_contrastive

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(contrastive, "train_contrastive", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_pipeline, evaluate=False)
    monkeypatch.setattr(contrastive, "train_contrastive", real)
    messages = []
    run_pipeline(tiny_pipeline, evaluate=False, echo=messages.append)
    assert any("mntp: done earlier" in m for m in messages) and any("simcse: running" in m for m in messages)
    marker = json.loads((tmp_path / "run/simcse/llm2embed_stage.json").read_text())
    assert marker["complete"] is True and marker["seconds_before"] == 0  # killed before its first checkpoint


def test_resumed_stage_counts_the_training_time_its_checkpoints_kept(tmp_path):
    """A stage killed after a checkpoint reports the time up to that checkpoint plus the resumed run's."""
    from llm2embed.pipeline import _marker, _prepare, _write_marker

    folder = tmp_path / "simcse"
    assert _prepare(folder, "k") is False and _marker(folder)["seconds_before"] == 0
    now = time.time()  # the killed run started 1000 s ago and saved its last checkpoint 600 s after that
    _write_marker(folder, {**_marker(folder), "attempt_started": now - 1000})
    state = folder / "checkpoint-40/trainer_state.json"
    state.parent.mkdir()
    state.write_text("{}")
    os.utime(state, (now - 400, now - 400))
    assert _prepare(folder, "k") is False and _marker(folder)["seconds_before"] == 600
    assert _prepare(folder, "k") is False and _marker(folder)["seconds_before"] == 600  # killed again, nothing new
    legacy = {"key": "k", "complete": False}  # an older version's marker: no start time, its file's time instead
    _write_marker(folder, legacy)
    os.utime(folder / "llm2embed_stage.json", (now - 1000, now - 1000))
    assert _prepare(folder, "k") is False and _marker(folder)["seconds_before"] == 600
    assert _prepare(folder, "other settings") is False and _marker(folder)["seconds_before"] == 0
    assert not state.exists()  # other settings start the stage over, and its clock


def test_config_file_and_cli(tmp_path, capsys):
    assert main(["pipeline", "--print-default-config", "--recipe", "llm2vec"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"] == "smollm2-135m" and printed["mntp"]["train_file"] == "wiki"
    assert printed["recipe"] == "llm2vec" and printed["bidirectional"] is True
    (tmp_path / "p.yaml").write_text("recipe: llm2vec\nmodel: my-model\nsupervised:\n  dataset_file_path: t.jsonl\n")
    config = load_pipeline_config(tmp_path / "p.yaml")
    assert config["model"] == "my-model" and config["supervised"]["dataset_file_path"] == "t.jsonl"
    assert config["mntp"] == default_config("llm2vec")["mntp"]
    # a recipe is one setting: the file's recipe, overridden by --recipe
    prompteol = load_pipeline_config(tmp_path / "p.yaml", recipe="prompteol-simcse")
    assert prompteol["mntp"] is None and prompteol["bidirectional"] is False
    assert prompteol["prompt_template"] == "prompteol" and prompteol["model"] == "my-model"
    (tmp_path / "r.yaml").write_text("recipe: llm2vek\n")
    with pytest.raises(ValueError, match="r.yaml: unknown recipe 'llm2vek'.*did you mean 'llm2vec'"):
        load_pipeline_config(tmp_path / "r.yaml")
    (tmp_path / "pool.yaml").write_text("encoder_pooling_mode: last_token+median\n")
    with pytest.raises(ValueError, match="pool.yaml: 'encoder_pooling_mode': unknown pooling mode 'median'"):
        load_pipeline_config(tmp_path / "pool.yaml")
    assert default_config()["encoder_pooling_mode"] == "last_token+mean"  # the default recipe's hand-out
    assert default_config("llm2vec")["encoder_pooling_mode"] is None
    (tmp_path / "bad.yaml").write_text("modle: x\n")
    with pytest.raises(ValueError, match="unknown pipeline key 'modle'; did you mean 'model'"):
        load_pipeline_config(tmp_path / "bad.yaml")


def test_config_extends_another_file_and_changes_only_what_it_lists(tmp_path, capsys):
    """An ablation config is its base plus a few keys: sections merge key by key, null removes a key."""
    (tmp_path / "base.yaml").write_text("recipe: llm2vec\nmntp: null\nevaluation:\n  final_tasks: [stsb]\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/child.yaml").write_text(
        "extends: ../base.yaml\nbidirectional: false\nsimcse:\n  learning_rate: 3.0e-4\n  save_steps: null\n"
        "evaluation:\n  selection: null\n")
    (tmp_path / "runs/grandchild.yaml").write_text("extends: child.yaml\nsimcse:\n  max_steps: 7\n")
    recipe = default_config("llm2vec")
    child = load_pipeline_config(tmp_path / "runs/child.yaml")
    assert child["mntp"] is None and child["bidirectional"] is False  # from the base, then the child's own
    assert child["simcse"]["learning_rate"] == 3e-4 and "save_steps" not in child["simcse"]
    assert {k: v for k, v in child["simcse"].items() if k not in ("learning_rate", "save_steps")} == \
        {k: v for k, v in recipe["simcse"].items() if k not in ("learning_rate", "save_steps")}
    assert child["evaluation"] == {**recipe["evaluation"], "final_tasks": ["stsb"], "selection": None}
    grandchild = load_pipeline_config(tmp_path / "runs/grandchild.yaml")
    assert grandchild["simcse"] == {**child["simcse"], "max_steps": 7} and grandchild["recipe"] == "llm2vec"
    assert main(["pipeline", str(tmp_path / "runs/grandchild.yaml"), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == grandchild  # what the file runs, chain resolved
    # --recipe goes under the whole chain: the files' settings on the other recipe
    other = load_pipeline_config(tmp_path / "runs/grandchild.yaml", recipe="prompteol-simcse")
    assert other["prompt_template"] == "prompteol" and other["simcse"]["simcse_dropout"] == 0.1
    assert other["simcse"]["max_steps"] == 7 and other["mntp"] is None
    # a plain file (no extends) still replaces a stage section whole, as the official configs are pasted in
    (tmp_path / "plain.yaml").write_text("recipe: llm2vec\nsimcse:\n  max_steps: 7\n")
    assert load_pipeline_config(tmp_path / "plain.yaml")["simcse"] == {"max_steps": 7}

    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="a.yaml: 'extends' goes round in a circle: .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_pipeline_config(tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ValueError, match="lost.yaml: 'extends': config file .*nowhere.yaml does not exist"):
        load_pipeline_config(tmp_path / "lost.yaml")
    (tmp_path / "typo.yaml").write_text("extends: base.yaml\nmodle: x\n")
    with pytest.raises(ValueError, match="typo.yaml: unknown pipeline key 'modle'; did you mean 'model'"):
        load_pipeline_config(tmp_path / "typo.yaml")
    (tmp_path / "list.yaml").write_text("extends: [base.yaml]\n")
    with pytest.raises(ValueError, match="list.yaml: 'extends' must be the path of another pipeline file"):
        load_pipeline_config(tmp_path / "list.yaml")


SHIPPED_CONFIGS = sorted([*ROOT.glob("benchmarks/ablations/*.yaml"), ROOT / "examples/pipeline_supervised.yaml"])


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_shipped_pipeline_configs_validate_and_name_their_own_output(path):
    """Every config a user is told to run loads, and the command in its header runs that file into its own folder."""
    config = load_pipeline_config(path)
    assert config.get("simcse") or config.get("supervised"), f"{path.name} trains nothing"
    commands = [line for line in path.read_text().splitlines() if "llm2embed pipeline" in line]
    assert commands, f"{path.name} has no command line in its header"
    for line in commands:
        assert path.relative_to(ROOT).as_posix() in line.split(), f"{path.name}: {line.strip()}"
        if path.parent.name == "ablations":
            assert line.rstrip().endswith(f"--output runs/ablations/{path.stem}"), f"{path.name}: {line.strip()}"
