"""Bad config values stop with a message that names the file, the key, the value and the expected type."""

import json

import pytest

from llm2embed.cli import main
from llm2embed.pipeline import load_pipeline_config
from llm2embed.training.config import ConfigError, DataArguments, MNTPArguments, ModelArguments, parse_config

BASE = {"model_name_or_path": "m", "output_dir": "out"}
CLASSES = [ModelArguments, DataArguments, MNTPArguments]


@pytest.mark.parametrize("key, value, expected", [
    ("lora_r", "abc", "an integer"),                      # int
    ("lora_r", 2.5, "an integer"),
    ("learning_rate", "fast", "a number"),                # float (TrainingArguments field)
    ("bf16", "yes", "true or false"),                     # bool
    ("merge", 1, "true or false"),
    ("mask_token_type", 5, "a string"),                   # str
    ("lora_dropout", 1.5, "a rate in [0, 1)"),            # ranges
    ("mlm_probability", 0.0, "a probability in (0, 1)"),
    ("per_device_train_batch_size", 0, "a count >= 1"),
    ("stop_after_n_steps", -3, "a count >= 1"),
    ("lora_r", -1, "a number >= 0"),
    ("learning_rate", -1e-4, "a number > 0"),
])
def test_each_wrong_value_is_named(key, value, expected, tmp_path):
    path = tmp_path / "mntp.json"
    path.write_text(json.dumps({**BASE, key: value}))
    with pytest.raises(ConfigError) as info:
        parse_config(path, CLASSES)
    message = str(info.value)
    assert str(path) in message and repr(key) in message and repr(value) in message and expected in message


def test_numbers_written_as_strings_are_read_as_numbers():
    """YAML reads ``1e-3`` as a string; a number the user clearly meant is accepted."""
    parsed = parse_config({**BASE, "learning_rate": "1e-3", "lora_r": "16"}, CLASSES)
    assert parsed.training.learning_rate == 0.001 and parsed.mntp.lora_r == 16


def test_cli_reports_the_file_and_key(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**BASE, "lora_r": "abc"}))
    assert main(["mntp", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: key 'lora_r' = 'abc': expected an integer" in err
    assert "not supported between" not in err


def test_pipeline_checks_every_section_before_running(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("simcse:\n  dataset_name: wiki\n  lora_r: abc\n")
    with pytest.raises(ConfigError, match=r"p\.yaml, section 'simcse': key 'lora_r' = 'abc': expected an integer"):
        load_pipeline_config(path)
    path.write_text("bidirectional: maybe\n")
    with pytest.raises(ConfigError, match=r"key 'bidirectional' = 'maybe': expected true or false"):
        load_pipeline_config(path)
    path.write_text("mntp:\n  train_file: wiki\n  lora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"section 'mntp': unknown config key 'lora_rank'; did you mean 'lora_r'"):
        load_pipeline_config(path)
