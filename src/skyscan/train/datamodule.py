"""A LightningDataModule over a dataset folder (see :mod:`skyscan.data.datasets`).

Batches are read as slices of the memory-mapped ``images.npy`` (one fancy-indexing read per
batch through ``__getitems__``, no per-item Python), whatever shape the case's samples have.
Augmentation is the sample description's (:mod:`skyscan.data.samples`; random 90-degree
rotations and flips for stamps), applied to training batches only, after they reach the
device.  What a batch's targets are is the task head's (:mod:`skyscan.train.heads`): it
gives the data module the dataset of each split (labels, class indices, or a regression's
targets of the positives).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from skyscan.data.datasets import load_split
from skyscan.data.samples import dihedral_augment, zoom_augment  # noqa: F401  (re-exported)

__all__ = [
    "CutoutDataset",
    "SampleDataModule",
    "StampDataModule",
    "dihedral_augment",
    "zoom_augment",
]


class CutoutDataset(Dataset):
    """Preprocessed cutouts and labels of one split, read batch-wise from the memory map.

    ``rows`` (the split's rows served, all by default) and ``targets`` (one per served row,
    the labels by default) come from :meth:`select`, which a subclass overrides to serve a
    subset with other targets.
    """

    def __init__(self, dataset_dir: str | Path, split: str):
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        images, meta, self.spec = load_split(dataset_dir, split)
        self.n = len(images)
        self.labels = meta.column("label").to_numpy().astype(np.float32)
        self.rows, self.targets = self.select(meta)
        self._images = None  # opened lazily in each worker process

    def select(self, meta) -> tuple[np.ndarray, np.ndarray]:
        """The split's rows served and one target per served row, from its metadata (a
        pyarrow table): every row and its 0/1 label (float32)."""
        return np.arange(self.n), self.labels

    def __len__(self) -> int:
        return len(self.rows)

    def _memmap(self):
        if self._images is None:
            self._images = np.load(self.dataset_dir / self.split / "images.npy", mmap_mode="r")
        return self._images

    def __getitems__(self, indices):
        idx = np.asarray(indices)
        rows = self.rows[idx]
        order = np.argsort(rows)  # sequential reads; restore the sampler's order after
        images = np.empty((len(idx), *self._memmap().shape[1:]), dtype=np.float32)
        images[order] = self._memmap()[rows[order]]
        return torch.from_numpy(images), torch.from_numpy(self.targets[idx])

    def __getitem__(self, i):
        x, y = self.__getitems__([i])
        return x[0], y[0]


def _as_batch(batch):
    return batch  # __getitems__ already returns (images, labels) tensors


class SampleDataModule(L.LightningDataModule):
    """Train / val / test loaders over a dataset folder.

    Parameters
    ----------
    dataset_dir : str or Path
    batch_size : int
    num_workers : int
        Loader processes (0 reads in the training process).
    dataset : callable, optional
        ``(dataset_dir, split) -> CutoutDataset`` serving a split's samples and targets
        (a task head's :meth:`~skyscan.train.heads.TaskHead.dataset`); default the labels.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        batch_size: int = 128,
        num_workers: int = 0,
        dataset: Callable[[Path, str], CutoutDataset] = CutoutDataset,
    ):
        super().__init__()
        self.dataset_dir = Path(dataset_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.make_dataset = dataset
        self.datasets: dict[str, CutoutDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "val", "test"):
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(self.dataset_dir, split)

    @property
    def spec(self) -> dict:
        self.setup()
        return self.datasets["train"].spec

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_as_batch,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)


#: The former name (every case's samples go through the same module).
StampDataModule = SampleDataModule
