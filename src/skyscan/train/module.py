"""The one LightningModule: a registered network, a task head, Adam with a step schedule.

What the network learns (its loss, validation metrics, augmentation of batches with their
targets) is the task head's (:mod:`skyscan.train.heads`); the optimiser, the schedule, the
logging and the gathering of validation outputs are the same for every task.
"""

from __future__ import annotations

import lightning as L
import torch

from skyscan.core.case import get_case
from skyscan.data.samples import describe
from skyscan.models import get_model
from skyscan.train.heads import head_from_dict

__all__ = ["SkyscanModule"]


class SkyscanModule(L.LightningModule):
    """Trains a registered model for a task head.

    Parameters
    ----------
    model : str
        Registry name (``deeplens``, ``fast``, ``vgg6``, ``deephits``, ``lensparams``, ...).
    head : dict, optional
        The task head (:meth:`skyscan.train.heads.TaskHead.to_dict`); None: binary
        classification.
    in_channels : int
        Bands (when ``model_kwargs`` is not given).
    learning_rate, lr_step_epochs, lr_factor, weight_decay : float, int, float, float
        Adam, with the rate multiplied by ``lr_factor`` every ``lr_step_epochs`` epochs.
    augment : bool
        Random transforms of training batches (the head's: the case's sample description's,
        dihedral for stamps, or one that moves a regression's targets with the stamp).
    zoom : pair of float, optional
        Random zoom of training stamps by a factor in ``[low, high]`` (DeepLens: 0.9-1.0).
    case : str, optional
        The science case whose sample description augments batches (image stamps if None).
    spec : dict, optional
        The dataset's preprocessing spec (what the augmentation may need).
    model_kwargs : dict, optional
        What sizes the network to the samples and the task (default
        ``{"in_channels": in_channels}``).
    head : dict, optional
        The task head (:func:`skyscan.train.heads.head_from_dict`).
    input_views : list of str, optional
        Views the network computes from its input (:mod:`skyscan.models.views`,
        ``train.input_views``), built into the exported model.
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
        head: dict | None = None,
        input_views: list | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.head = head_from_dict(head)
        self.samples = describe(get_case(case) if case else None)
        kwargs = dict(model_kwargs or {"in_channels": in_channels})
        if input_views:
            from skyscan.data.preprocess import METHODS
            from skyscan.models.views import with_views

            stretch = {v: k for k, v in METHODS.items()}.get((spec or {}).get("method"))
            self.net = with_views(
                lambda channels: get_model(model, **{**kwargs, "in_channels": channels}),
                list(input_views),
                int(kwargs["in_channels"]),
                tuple((spec or {})["shape"][-2:]),
                stretch,
            )
        else:
            self.net = get_model(model, **kwargs)
        for name, value in self.head.buffers().items():
            self.register_buffer(name, torch.tensor(value, dtype=torch.float32))
        self._val_outputs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        trainer = self._trainer  # None outside a Trainer (the property would raise)
        training = trainer is not None and trainer.training
        return self.head.prepare(self, x, y, training)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.head.loss(self(x).float(), y)
        self.log(f"train_{self.head.loss_name}", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x).float()
        head = self.head
        self.log(f"val_{head.loss_name}", head.loss(out, y), prog_bar=True, on_epoch=True)
        for name, value in head.batch_metrics(out, y).items():
            self.log(name, value, on_epoch=True)
        if head.collects:
            self._val_outputs.append(out.detach().cpu())
            self._val_targets.append(y.detach().cpu())

    def on_validation_epoch_end(self):
        if not self._val_outputs:
            return
        outputs = torch.cat(self._val_outputs).numpy()
        targets = torch.cat(self._val_targets).numpy()
        self._val_outputs.clear()
        self._val_targets.clear()
        for name, value in self.head.epoch_metrics(outputs, targets).items():
            self.log(name, float(value), prog_bar=True)

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.Adam(self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(
            opt, step_size=hp.lr_step_epochs, gamma=hp.lr_factor
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
