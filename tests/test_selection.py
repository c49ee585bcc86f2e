"""Model selection on dev: scored every N steps, the best step's weights are the ones saved, resumable."""

import json
import logging
import random

import pytest

from llm2embed import Encoder
from llm2embed.evaluation.sts import evaluate_sts, load_sts
from llm2embed.training.contrastive import train_contrastive

WORDS = "man plays guitar stage woman slices onion kitchen market fell monday music lessons children cat sat".split()


@pytest.fixture
def dev_file(tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(40):
        a = " ".join(rng.sample(WORDS, 5))
        b = " ".join(rng.sample(WORDS, 5))
        rows.append({"sentence1": a, "sentence2": b, "score": round(rng.uniform(0, 5), 2)})
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def simcse_config(llama_folder, tmp_path, dev_file, **extra):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man plays a guitar number {i} while the cat sat on the mat" for i in range(64)))
    return {"model_name_or_path": llama_folder, "dataset_file_path": str(corpus), "output_dir": str(tmp_path / "out"),
            "max_seq_length": 16, "per_device_train_batch_size": 8, "lora_r": 4, "learning_rate": 5e-3,
            "stop_after_n_steps": 4, "max_steps": 4, "save_steps": 2, "use_cpu": True, "disable_tqdm": True,
            "eval_dataset": str(dev_file), "eval_every_n_steps": 1, **extra}


def test_best_dev_step_is_what_is_saved(llama_folder, tmp_path, dev_file, caplog):
    caplog.set_level(logging.INFO, logger="llm2embed")
    train_contrastive(simcse_config(llama_folder, tmp_path, dev_file), mode="simcse")
    meta = json.loads((tmp_path / "out/llm2embed_contrastive.json").read_text())
    selection = meta["selection"]
    steps = [int(s) for s, _ in selection["history"]]
    assert steps == [0, 1, 2, 3, 4]
    best_step, best_score = max(selection["history"], key=lambda h: h[1])
    assert selection["best_step"] == best_step and selection["best_score"] == best_score
    # the training log shows the kept score exactly as the report will print it (one rounding, not two)
    assert f"step {best_step}: {selection['metric']} {best_score:.2f}" in caplog.text
    assert best_step != 4  # (deterministic) so the saved weights are the restored ones, not simply the last
    saved = Encoder.from_pretrained(tmp_path / "out/encoder")
    assert evaluate_sts(saved, load_sts(dev_file))["spearman"] == pytest.approx(best_score, abs=0.05)
    assert (tmp_path / "out/best/selection.json").is_file()


def test_selection_state_survives_a_resume_and_fresh_drops_it(llama_folder, tmp_path, dev_file):
    config = simcse_config(llama_folder, tmp_path, dev_file, stop_after_n_steps=2)
    train_contrastive(config, mode="simcse")
    first = json.loads((tmp_path / "out/best/selection.json").read_text())["history"]
    assert [int(s) for s, _ in first] == [0, 1, 2]
    train_contrastive({**config, "stop_after_n_steps": 4}, mode="simcse")  # resumes at step 2
    history = json.loads((tmp_path / "out/llm2embed_contrastive.json").read_text())["selection"]["history"]
    assert [int(s) for s, _ in history] == [0, 1, 2, 3, 4] and history[:3] == first
    train_contrastive({**config, "stop_after_n_steps": 1}, mode="simcse", fresh=True)
    history = json.loads((tmp_path / "out/llm2embed_contrastive.json").read_text())["selection"]["history"]
    assert [int(s) for s, _ in history] == [0, 1]


def test_test_split_never_chooses(llama_folder, tmp_path, dev_file):
    with pytest.raises(ValueError, match="must never choose a model"):
        train_contrastive(simcse_config(llama_folder, tmp_path, dev_file, eval_dataset="stsb"), mode="simcse")


def test_full_fine_tuning_selects_and_resumes(llama_folder, tmp_path, dev_file):
    """``lora_r: 0`` trains every weight: checkpoints hold the whole model, selection and resume still work."""
    config = simcse_config(llama_folder, tmp_path, dev_file, lora_r=0, stop_after_n_steps=2, learning_rate=1e-3)
    train_contrastive(config, mode="simcse")
    assert (tmp_path / "out/checkpoint-2/model.safetensors").is_file()
    train_contrastive({**config, "stop_after_n_steps": 4}, mode="simcse")  # resumes from the full checkpoint
    meta = json.loads((tmp_path / "out/llm2embed_contrastive.json").read_text())
    assert meta["global_step"] == 4 and [int(s) for s, _ in meta["selection"]["history"]] == [0, 1, 2, 3, 4]
    assert (tmp_path / "out/best/model.safetensors").is_file()
    assert not (tmp_path / "out/encoder/adapter").exists()
    saved = Encoder.from_pretrained(tmp_path / "out/encoder")
    assert evaluate_sts(saved, load_sts(dev_file))["spearman"] == pytest.approx(meta["selection"]["best_score"],
                                                                             abs=0.05)


def scripted_selector(tmp_path, scores):
    """A :class:`DevSelector` whose dev scores are given and which writes nothing: the bookkeeping on its own."""
    from llm2embed.training.selection import DevSelector

    class Scripted(DevSelector):
        def score(self):
            return scores.pop(0)

        def _write(self, save_weights):
            pass

    return Scripted(encoder=None, pairs=[], every=1, output_dir=tmp_path)


def test_kept_score_is_logged_and_reported_with_one_rounding(tmp_path, caplog):
    """77.184994… is 77.18 but its 4-decimal form 77.1850 prints as 77.19: log and report must agree."""
    caplog.set_level(logging.INFO, logger="llm2embed")
    selector = scripted_selector(tmp_path, [70.0, 77.18499422771539])
    selector.evaluate(0), selector.evaluate(1)
    summary = selector.summary()
    assert summary["best_step"] == 1 and summary["history"][1] == [1, summary["best_score"]]
    assert f"step 1: stsb-dev Spearman {summary['best_score']:.2f} (best so far)" in caplog.text
