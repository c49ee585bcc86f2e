"""Seeds as a setting: k runs of one config, one mean ± std table, finished seeds skipped on a rerun."""

import json

from llm2embed.cli import main
from llm2embed.pipeline import default_config
from llm2embed.seeds import run_seeds, seed_table


def test_seed_table_mean_and_sample_std():
    table = seed_table({1: {"final": {"stsb": 70.0, "wiki-retrieval": 80.0}}, 2: {"final": {"stsb": 74.0}},
                        3: {"final": {"stsb": 72.0}}})
    assert table["final"]["stsb"] == {"mean": 72.0, "std": 2.0, "n": 3, "values": [70.0, 74.0, 72.0], "min": 70.0}
    assert table["final"]["wiki-retrieval"]["n"] == 1


def test_two_seeds_table_and_rerun_skips(tmp_path, llama_folder):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man plays a guitar on stage {i} and a woman slices an onion" for i in range(40)))
    sts = tmp_path / "pairs.jsonl"
    sts.write_text("\n".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) for a, b, s in [
        ("a man plays a guitar", "a man plays music", 4.0), ("the cat sat", "onion market", 0.5),
        ("music lessons", "guitar lessons", 3.0), ("the woman slices an onion", "a woman cuts an onion", 4.5)]))
    config = default_config("llm2vec")
    config["model"] = llama_folder
    config["mntp"] = None
    config["simcse"] = {"dataset_file_path": str(corpus), "max_seq_length": 16, "per_device_train_batch_size": 8,
                        "max_steps": 2, "stop_after_n_steps": 2, "save_steps": 2, "use_cpu": True,
                        "disable_tqdm": True, "lora_r": 4, "learning_rate": 1e-3, "seed": 7}
    config["evaluation"] = {"stage_tasks": [f"sts:{sts}"], "final_tasks": [f"sts:{sts}"], "baselines": None,
                            "reduced_precision": None, "selection": str(sts)}
    out = tmp_path / "seeds"
    result = run_seeds(config, out, seeds=2, echo=lambda _m: None)
    assert result["seeds"] == [7, 8]
    assert (out / "seed-7/simcse/encoder/modules.json").is_file() and (out / "seed-8/simcse/encoder").is_dir()
    task = "sts:pairs"
    final = result["table"]["simcse"][task]
    assert final["n"] == 2 and len(final["values"]) == 2
    # the training-free baselines of the model are in the table, each scored once per seed (cached)
    assert {llama_folder, f"{llama_folder}:causal", f"{llama_folder}:prompteol"} <= set(result["table"])
    markdown = (out / "seeds.md").read_text()
    assert "| simcse |" in markdown and "±" in markdown and "| 7 |" in markdown
    assert json.loads((out / "seeds.json").read_text())["table"]["simcse"][task]["mean"] == final["mean"]
    seeds_7 = json.loads((out / "seed-7/simcse/llm2embed_contrastive.json").read_text())
    assert seeds_7["selection"]["best_step"] in (0, 1, 2)

    messages = []
    run_seeds(config, out, seeds=3, echo=messages.append)
    assert sum("simcse: done earlier" in m for m in messages) == 2  # seeds 7 and 8 skipped, seed 9 trained
    assert sum("simcse: running" in m for m in messages) == 1


def test_cli_seeds_option(tmp_path, capsys):
    assert main(["pipeline", "--seeds", "0", "--output", str(tmp_path / "x")]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
