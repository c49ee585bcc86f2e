"""Length-grouped batches: every row once per epoch, random batches, little padding."""

import random
import statistics

import pytest
from datasets import Dataset

from llm2embed.training.sampling import LengthGroupedBatchSampler, row_lengths


@pytest.fixture
def sentences():
    rng = random.Random(0)
    texts = [" ".join("word" for _ in range(rng.randint(3, 60))) + f" {i}" for i in range(1000)]
    return Dataset.from_dict({"anchor": texts, "positive": texts})


def padded_share(batches, lengths):
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - real / padded


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_row_once_per_epoch_and_len_matches(sentences, drop_last):
    sampler = LengthGroupedBatchSampler(sentences, batch_size=32, drop_last=drop_last, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen))
    if drop_last:
        assert all(len(b) == 32 for b in batches) and len(seen) == 1000 // 32 * 32
    else:
        assert sorted(seen) == list(range(1000))


def test_batches_are_random_but_padding_mostly_gone(sentences):
    lengths = row_lengths(sentences)
    sampler = LengthGroupedBatchSampler(sentences, batch_size=32, drop_last=False, seed=3)
    grouped = list(sampler)
    rng = random.Random(0)
    order = list(range(1000))
    rng.shuffle(order)
    plain = [order[i:i + 32] for i in range(0, 1000, 32)]
    assert padded_share(grouped, lengths) < 0.1 < 0.3 < padded_share(plain, lengths)
    # batches are not just the sorted corpus: their mean lengths are spread over the whole range, in random order
    means = [statistics.mean(lengths[i] for i in b) for b in grouped]
    assert means != sorted(means) and means != sorted(means, reverse=True)
    assert list(sampler) == grouped                    # deterministic for a seed and epoch
    sampler.set_epoch(1)
    assert list(sampler) != grouped                    # a new order every epoch


def test_row_length_is_the_longest_text_of_the_row():
    ds = Dataset.from_dict({"anchor": ["ab", "abcdef"], "positive": ["abcd", "a"], "negative": ["", "abc"]})
    assert row_lengths(ds) == [4, 6]
