"""Run-time data on a machine without ../shared: local override, the Hub path (fake loader), the offline message."""

import json

import pytest
from datasets import Dataset

from llm2embed import public_data
from llm2embed.cli import main
from llm2embed.public_data import DataUnavailableError, load_nli_triplets, load_stsb, stsb_source

ROWS = {"sentence1": ["a man plays a guitar", "the cat sat", "music lessons"],
        "sentence2": ["a man plays music", "onion market", "guitar lessons"], "score": [0.8, 0.1, 0.6]}


@pytest.fixture
def no_local_data(monkeypatch):
    """A user's machine: no shared/data folder, no override; the Hub loader is replaced per test."""
    monkeypatch.delenv(public_data.STSB_ENV, raising=False)
    monkeypatch.delenv(public_data.NLI_ENV, raising=False)
    monkeypatch.setattr(public_data, "_shared_data_dirs", lambda: [])
    yield
    public_data.set_hub_loader(None)


def test_local_folder_override(tmp_path, monkeypatch):
    lines = [f"genre\tfile\t2012\t{i}\t{s}\t{a}\t{b}" for i, (a, b, s) in
             enumerate(zip(ROWS["sentence1"], ROWS["sentence2"], (4.0, 0.5, 3.0)))]
    (tmp_path / "sts-dev.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv(public_data.STSB_ENV, str(tmp_path))
    public_data.set_hub_loader(None)
    pairs = load_stsb("dev")
    assert pairs.sentences1 == ROWS["sentence1"] and list(pairs.scores) == [4.0, 0.5, 3.0]
    assert stsb_source("dev") == str(tmp_path / "sts-dev.csv")
    with pytest.raises(DataUnavailableError, match="sts-test.csv"):
        load_stsb("test")  # the override folder is used as given: a missing split is an error, not a download


def test_hub_copy_when_no_local_copy(no_local_data):
    calls = []

    def fake_hub(name, split):
        calls.append((name, split))
        return Dataset.from_dict(ROWS)

    public_data.set_hub_loader(fake_hub)
    pairs = load_stsb("dev")
    assert calls == [("sentence-transformers/stsb", "validation")]
    assert pairs.sentences2 == ROWS["sentence2"] and stsb_source("dev") == "hub:sentence-transformers/stsb"
    load_stsb("dev")
    assert len(calls) == 1  # loaded once per process


def test_second_hub_copy_when_the_first_is_gone(no_local_data):
    def fake_hub(name, split):
        if name == "sentence-transformers/stsb":
            raise FileNotFoundError("Dataset 'sentence-transformers/stsb' doesn't exist on the Hub")
        return Dataset.from_dict(ROWS)

    public_data.set_hub_loader(fake_hub)
    assert stsb_source("test") == "hub:mteb/stsbenchmark-sts"


def test_offline_message_names_every_way(no_local_data):
    calls = []

    def offline(name, split):
        calls.append(name)
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    public_data.set_hub_loader(offline)
    with pytest.raises(DataUnavailableError) as info:
        load_stsb("test")
    message = str(info.value)
    assert "LLM2EMBED_STSB_DIR" in message and "shared/data/stsb" in message
    assert "sentence-transformers/stsb" in message and "sts-test.csv" in message
    assert calls == ["sentence-transformers/stsb"]  # offline: the second copy is not tried (each try costs ~25 s)
    with pytest.raises(DataUnavailableError, match="unreachable earlier in this run"):
        load_stsb("dev")
    assert len(calls) == 1  # nor is the Hub asked again in the same run


def test_eval_cli_offline_error(no_local_data, llama_folder, capsys):
    public_data.set_hub_loader(lambda name, split: (_ for _ in ()).throw(ConnectionError("no network")))
    assert main(["eval", llama_folder, "--tasks", "stsb"]) == 2
    err = capsys.readouterr().err
    assert "STS-B test split not found" in err and "LLM2EMBED_STSB_DIR" in err


def test_pipeline_says_what_it_cannot_score_before_training(no_local_data):
    from llm2embed.pipeline import check_evaluation_data, default_config

    public_data.set_hub_loader(lambda name, split: (_ for _ in ()).throw(ConnectionError("no network")))
    messages = []
    config = check_evaluation_data(default_config(), echo=messages.append)
    assert "stsb" not in config["evaluation"]["stage_tasks"] and "stsb" not in config["evaluation"]["final_tasks"]
    assert "wiki" in config["evaluation"]["final_tasks"] and config["evaluation"]["selection"] is None
    assert any("no STS-B scores" in m and "LLM2EMBED_STSB_DIR" in m for m in messages)
    assert any("no dev-set selection" in m for m in messages)


def test_nli_triplets_local_then_hub(no_local_data, tmp_path, monkeypatch):
    path = tmp_path / "nli.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
    monkeypatch.setenv(public_data.NLI_ENV, str(path))
    assert load_nli_triplets() == ([{"query": "q", "positive": "p", "negative": "n"}], str(path))
    monkeypatch.delenv(public_data.NLI_ENV)

    def fake_hub(name, subset, split):
        assert (name, subset, split) == ("sentence-transformers/all-nli", "triplet", "train[:2]")
        return Dataset.from_dict({"anchor": ["a", "b"], "positive": ["p", "q"], "negative": ["n", "m"]})

    public_data.set_hub_loader(fake_hub)
    rows, source = load_nli_triplets(limit=2)
    assert rows[1] == {"query": "b", "positive": "q", "negative": "m"} and source.startswith("hub:")


def test_supervised_dataset_name_nli(no_local_data, tmp_path, monkeypatch):
    from llm2embed.training.contrastive import ContrastiveArguments, load_pairs

    path = tmp_path / "nli.jsonl"
    path.write_text("\n".join(json.dumps({"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}"})
                              for i in range(5)))
    monkeypatch.setenv(public_data.NLI_ENV, str(path))
    data = load_pairs(ContrastiveArguments(dataset_name="nli", max_train_samples=3), "supervised")
    assert list(data) == ["nli"] and len(data["nli"]) == 3 and data["nli"].column_names == ["anchor", "positive",
                                                                                           "negative"]


def test_supervised_stsb_train_pairs_from_the_hub_scale(no_local_data):
    from llm2embed.training.contrastive import ContrastiveArguments, load_pairs

    rows = {"sentence1": ["a", "b", "c"], "sentence2": ["x", "y", "z"], "score": [0.9, 0.5, 0.8]}  # 0-1 scale
    public_data.set_hub_loader(lambda name, split: Dataset.from_dict(rows))
    data = load_pairs(ContrastiveArguments(dataset_name="stsb-train"), "supervised")["stsb_train"]
    assert sorted(data["anchor"]) == ["a", "c"] and "negative" not in data.column_names
