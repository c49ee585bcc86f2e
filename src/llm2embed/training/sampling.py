"""Length-grouped batches for contrastive training: the same in-batch negatives, far less padding.

Every column of a batch is padded to its longest text, so a random batch of Wikipedia sentences (mean 29
tokens, the longest of 32 about 59) spends half its compute on padding. With ``group_by_length: true`` the
sampler shuffles the rows, cuts them into chunks of ``chunk_batches`` batches, sorts each chunk by text
length, slices it into batches and shuffles the batch order: every row is still seen once per epoch, the
batches are still random samples of the corpus (only of similar length), and padding mostly disappears.

>>> sampler = LengthGroupedBatchSampler(dataset, batch_size=32, drop_last=False, seed=42)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

__all__ = ["LengthGroupedBatchSampler", "row_lengths"]


def row_lengths(dataset, columns: list[str] | None = None) -> list[int]:
    """The character length of each row's longest text (over ``columns``, default every string column)."""
    names = columns or [c for c in dataset.column_names if isinstance(dataset[0][c], str)]
    lengths = [0] * len(dataset)
    for name in names:
        lengths = [max(a, len(b)) for a, b in zip(lengths, dataset[name])]
    return lengths


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Random batches of similar-length rows (see the module docstring); deterministic per seed and epoch."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None, generator=None,
                 seed: int = 0, chunk_batches: int = 16) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)
        self.lengths = row_lengths(dataset)
        self.chunk = batch_size * chunk_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = sorted(order[start:start + self.chunk], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[index]

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.chunk)
        per_chunk = -(-self.chunk // self.batch_size) if not self.drop_last else self.chunk // self.batch_size
        last = (rest // self.batch_size if self.drop_last else -(-rest // self.batch_size))
        return full * per_chunk + last
