"""Images -> batches: per-sample seeded augmentation, rank sharding, and resuming mid-epoch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from app.cores import available_cores
from app.model_config import PreprocessConfig
from training.augment import TrainTransform, eval_transform, sample_seed
from training.data.base import ImageSet


class TrainImages(Dataset[tuple[Tensor, int]]):
    """Indexed by (index, seed): the seed fixes that image's augmentation."""

    def __init__(self, images: ImageSet, transform: TrainTransform) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, int]:
        index, seed = item
        return self.transform(self.images.image(index), seed), int(self.images.targets[index])


class EvalImages(Dataset[tuple[Tensor, int]]):
    """Indexed by position; the service's preprocessing."""

    def __init__(self, images: ImageSet, spec: PreprocessConfig) -> None:
        self.images = images
        self.spec = spec

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return eval_transform(self.images.image(index), self.spec), int(self.images.targets[index])


class EpochSampler(Sampler[tuple[int, int]]):
    """One epoch of one rank: `DistributedSampler`'s seeded shuffle and sharding, cut to whole
    optimizer steps, starting `start` images in (where a resumed run left off)."""

    def __init__(
        self, size: int, per_rank: int, epoch: int, seed: int, rank: int, world: int, start: int
    ) -> None:
        shard: DistributedSampler[int] = DistributedSampler(
            cast(Dataset[int], range(size)), num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        shard.set_epoch(epoch)
        self.indices = list(shard)[start:per_rank]
        self.epoch = epoch
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices:
            yield index, sample_seed(self.seed, self.epoch, index)


def default_workers(local_world_size: int = 1) -> int:
    """Loader processes per rank: the cores this process may use, shared by the ranks on this
    node, less one for the rank's own process (which feeds the device)."""
    return max(0, available_cores() // max(1, local_world_size) - 1)


def train_loader(
    dataset: TrainImages, sampler: EpochSampler, micro_batch: int, workers: int, pin: bool
) -> DataLoader[tuple[Tensor, int]]:
    return DataLoader(
        dataset, batch_size=micro_batch, sampler=sampler, num_workers=workers, pin_memory=pin
    )


def eval_loader(
    dataset: EvalImages, batch_size: int, workers: int, rank: int = 0, world: int = 1
) -> DataLoader[tuple[Tensor, int]]:
    """This rank's share of the images (every image exactly once over all ranks)."""
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    return DataLoader(shard, batch_size=batch_size, num_workers=workers, pin_memory=False)


Batch = tuple[Tensor, Tensor]


class DeviceBatches:
    """(images, targets) on `device`. On CUDA the next batch's copy from pinned memory runs on a
    side stream while the current step computes, so the step never waits on the copy."""

    def __init__(self, batches: Iterable[Batch], device: torch.device) -> None:
        self.batches = iter(batches)
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ahead: Batch | None = None
        self.started = False

    def _load(self) -> Batch | None:
        try:
            images, targets = next(self.batches)
        except StopIteration:
            return None
        if self.stream is None:
            return images.to(self.device), targets.to(self.device)
        with torch.cuda.stream(self.stream):
            return (
                images.to(self.device, non_blocking=True),
                targets.to(self.device, non_blocking=True),
            )

    def __iter__(self) -> DeviceBatches:
        return self

    def __next__(self) -> Batch:
        if not self.started:
            self.ahead, self.started = self._load(), True
        batch = self.ahead
        if batch is None:
            raise StopIteration
        if self.stream is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_stream(self.stream)  # the copy is done before the step reads it
            for tensor in batch:
                tensor.record_stream(compute)  # its memory is not reused while the step runs
        self.ahead = self._load()
        return batch
