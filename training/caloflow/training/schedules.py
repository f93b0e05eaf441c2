"""Learning-rate schedules built from the loader length (never from hard-coded step counts)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ConstantLR, CyclicLR, LRScheduler, OneCycleLR

from caloflow.training.presets import Schedule


def build_optimizer(parameters: list[torch.nn.Parameter], schedule: Schedule) -> torch.optim.Adam:
    """Adam with default betas and eps, no weight decay (method doc 4.1)."""
    return torch.optim.Adam(parameters, lr=schedule.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule, steps_per_epoch: int) -> LRScheduler:
    """The per-batch LR schedule for ``schedule.epochs`` epochs of ``steps_per_epoch`` optimiser steps."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    total_steps = steps_per_epoch * schedule.epochs
    if schedule.kind == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=schedule.max_lr,
            total_steps=total_steps,
            pct_start=schedule.pct_start,
            anneal_strategy="cos",
            three_phase=schedule.three_phase,
            div_factor=schedule.div_factor,
            final_div_factor=schedule.final_div_factor,
            cycle_momentum=True,
            base_momentum=schedule.base_momentum,
            max_momentum=0.95,
        )
    if schedule.kind == "cyclic":
        step_size = max(1, round(schedule.cycle_epochs * steps_per_epoch))
        return CyclicLR(
            optimizer,
            base_lr=schedule.base_lr,
            max_lr=schedule.max_lr,
            step_size_up=step_size,
            step_size_down=step_size,
            mode="triangular2",
            cycle_momentum=False,
        )
    return ConstantLR(optimizer, factor=1.0, total_iters=0)
