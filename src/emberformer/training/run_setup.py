"""Everything a training run needs, built once, before the first epoch, in one place.

:func:`build_learner` puts a model on its device with its wrappers, optimizer and grad scaler (the
bench builds one per batch size with it); :func:`build_run` adds the loaders, the static raster,
the checkpointer, the logger and the signal guard. The epoch loop, the end-of-run pass and the
bench only read what these built.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from emberformer.data.datamodule import FireDataModule
from emberformer.scoring.metrics import check_threshold
from emberformer.sweeps.pruning import TrialPruning
from emberformer.tracking import RunLogger
from emberformer.training import distributed
from emberformer.training.early_stopping import EarlyStopping
from emberformer.training.hardware import Hardware
from emberformer.training.losses import WeightedLoss
from emberformer.training.run_state import Checkpointer, SignalGuard


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class LoopSettings:
    """The trainer's settings (``trainer.*``, ``metrics.pred_thresh``, ``ceiling.samples``), checked."""

    epochs: int
    log_every: int
    seed: int
    thresh: float
    limit_batches: int | None
    progress: bool
    evaluate_test: bool
    ceiling_samples: int
    preview_samples: int

    def __post_init__(self) -> None:
        for key, value in (("trainer.epochs", self.epochs), ("trainer.log_metrics_every", self.log_every)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        lb = self.limit_batches
        if lb is not None and (isinstance(lb, bool) or not isinstance(lb, int) or lb < 1):
            raise ValueError(f"trainer.limit_batches must be null or an integer >= 1, got {lb!r}")
        self.thresh = check_threshold(self.thresh)
        ps = self.preview_samples
        if isinstance(ps, bool) or not isinstance(ps, int) or ps < 0:
            raise ValueError(f"trainer.preview_samples must be an integer >= 0, got {ps!r}")
        if isinstance(self.ceiling_samples, bool) or int(self.ceiling_samples) < 0:
            raise ValueError(f"ceiling.samples must be an integer >= 0 (0: no ceiling), got {self.ceiling_samples}")
        self.seed, self.thresh, self.ceiling_samples = int(self.seed), float(self.thresh), int(self.ceiling_samples)


@dataclass
class Learner:
    """A model on its device: ``model`` is the bare module (its state_dict is what checkpoints
    hold), ``net`` what is called (the DDP and/or compiled wrapper, or ``model`` itself)."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer | None
    scaler: Any
    trainable: bool
    n_params: int


def build_learner(model: nn.Module, optimizer_factory: Callable[..., torch.optim.Optimizer],
                  hardware: Hardware, device: torch.device, world_size: int = 1) -> Learner:
    """Model on ``device`` (channels_last when asked), its optimizer (none without trainable
    parameters), grad scaler, then the DDP wrapper (several processes) and torch.compile."""
    model = model.to(device)
    if hardware.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = model.param_groups()  # type: ignore[operator]
    trainable = any(p.requires_grad for ps in groups.values() for p in ps)
    optimizer = optimizer_factory(groups) if trainable else None
    scaler = hardware.grad_scaler()
    net: nn.Module = model
    if world_size > 1 and trainable:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if hardware.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    return Learner(model, net, optimizer, scaler, trainable, count_parameters(model))


@dataclass
class RunSetup:
    """One run's parts; ``main`` is rank 0 (the only one that logs and writes files)."""

    settings: LoopSettings
    hardware: Hardware
    data: FireDataModule
    loss_fn: WeightedLoss
    early: EarlyStopping
    logger: RunLogger
    pruning: TrialPruning
    run_dir: Path
    device: torch.device
    main: bool
    world_size: int
    learner: Learner
    static: torch.Tensor  # the static raster on the device, cropped per sample there
    loaders: dict[str, DataLoader]
    steps_per_epoch: int
    checkpoints: Checkpointer
    signals: SignalGuard
    summary: dict[str, Any] = field(default_factory=dict)  # the run's closing summary, once finished

    @property
    def epochs(self) -> int:
        """Epochs this run goes to: one evaluation pass for a model with nothing to train."""
        return self.settings.epochs if self.learner.trainable else 1

    def release(self, wait: bool = True) -> None:
        """Release the DDP wrapper before its process group: a DDP reducer destroyed after the
        group (and after the other rank left) can hang forever in gloo's destructor."""
        self.learner.net = self.learner.model
        gc.collect()
        distributed.cleanup(wait)


def build_run(settings: LoopSettings, *, model: nn.Module, data: FireDataModule, loss_fn: WeightedLoss,
              optimizer_factory: Callable[..., torch.optim.Optimizer], early_stopping: EarlyStopping,
              hardware: Hardware, logger: RunLogger, run_dir: Path, config: dict[str, Any],
              pruning: TrialPruning | None = None) -> RunSetup:
    """Device, process group, model wrappers, optimizer, loaders and checkpointer of one run."""
    rank, world_size, local_rank = distributed.world()
    device = hardware.setup(local_rank)
    distributed.init(device)
    learner = build_learner(model, optimizer_factory, hardware, device, world_size)
    static = data.static_raster().to(device)
    loaders = {k: data.loader(k, settings.seed, rank, world_size) for k in ("train", "val", "test")}
    n_train = len(loaders["train"])
    steps = n_train if settings.limit_batches is None else min(n_train, settings.limit_batches)
    return RunSetup(
        settings=settings, hardware=hardware, data=data, loss_fn=loss_fn, early=early_stopping,
        logger=logger if rank == 0 else RunLogger(None),
        pruning=pruning if pruning is not None else TrialPruning(), run_dir=Path(run_dir), device=device,
        main=rank == 0, world_size=world_size, learner=learner, static=static, loaders=loaders,
        steps_per_epoch=steps,
        checkpoints=Checkpointer(Path(run_dir), learner.model, learner.optimizer, learner.scaler,
                                 early_stopping, config),
        signals=SignalGuard(announce=rank == 0))
