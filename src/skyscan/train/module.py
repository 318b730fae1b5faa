"""The LightningModule: binary cross-entropy, Adam with the DeepLens step schedule, AUROC."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn

from skyscan.core.case import get_case
from skyscan.data.samples import describe
from skyscan.evaluate.metrics import auroc
from skyscan.models import get_model

__all__ = ["Classifier"]


class Classifier(L.LightningModule):
    """Trains a registered model to output the logit of "this stamp is a positive" (a lens, ...).

    Parameters
    ----------
    model : str
        Registry name (``deeplens``, ``fast``, ``vgg6``, ``deephits``).
    in_channels : int
        Bands.
    learning_rate, lr_step_epochs, lr_factor, weight_decay : float, int, float, float
        Adam, with the rate multiplied by ``lr_factor`` every ``lr_step_epochs`` epochs.
    augment : bool
        Random transforms of training batches (the case's sample description says which:
        dihedral for stamps).
    zoom : pair of float, optional
        Random zoom of training stamps by a factor in ``[low, high]`` (DeepLens: 0.9-1.0).
    case : str, optional
        The science case whose sample description augments batches (image stamps if None).
    spec : dict, optional
        The dataset's preprocessing spec (what the augmentation may need).
    model_kwargs : dict, optional
        What sizes the network to the samples (default ``{"in_channels": in_channels}``).
    """

    def __init__(
        self,
        model: str = "fast",
        in_channels: int = 3,
        learning_rate: float = 1e-3,
        lr_step_epochs: int = 40,
        lr_factor: float = 0.1,
        weight_decay: float = 0.0,
        augment: bool = True,
        zoom: tuple[float, float] | None = None,
        case: str | None = None,
        spec: dict | None = None,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.samples = describe(get_case(case) if case else None)
        self.net = get_model(model, **(model_kwargs or {"in_channels": in_channels}))
        self.loss = nn.BCEWithLogitsLoss()
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        images, labels = batch
        trainer = self._trainer  # None outside a Trainer (the property would raise)
        augment = trainer is not None and trainer.training and self.hparams.augment
        settings = {"augment": augment, "zoom": self.hparams.zoom}
        return self.samples.augment(images, self.hparams.spec, settings), labels

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = self.loss(self(images).float(), labels)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images).float()
        self.log("val_loss", self.loss(logits, labels), prog_bar=True, on_epoch=True)
        self._val_scores.append(logits.detach().cpu())
        self._val_labels.append(labels.detach().cpu())

    def on_validation_epoch_end(self):
        if not self._val_scores:
            return
        scores = torch.cat(self._val_scores).numpy()
        labels = torch.cat(self._val_labels).numpy()
        self._val_scores.clear()
        self._val_labels.clear()
        value = auroc(labels, scores) if 0 < labels.sum() < len(labels) else np.nan
        self.log("val_auroc", float(value), prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(
            opt, step_size=hp.lr_step_epochs, gamma=hp.lr_factor
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
