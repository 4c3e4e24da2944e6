"""Chapter 6: a minimal training loop for token tagging and sequence classification."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from transformer_lib.data import IGNORE

__all__ = ["History", "accuracy", "evaluate", "train"]


@dataclass
class History:
    """What :func:`train` records, for plotting."""

    step: list[int] = field(default_factory=list)  # step of each training-loss record
    loss: list[float] = field(default_factory=list)  # training loss at that step
    lr: list[float] = field(default_factory=list)  # learning rate at that step
    eval_step: list[int] = field(default_factory=list)  # step of each evaluation
    eval_accuracy: list[float] = field(default_factory=list)  # held-out accuracy then


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of graded targets predicted right.

    Args:
        logits: (..., n_classes).
        targets: (...), class ids; :data:`~transformer_lib.data.IGNORE` is not graded.
    """
    graded = targets != IGNORE
    correct = (logits.argmax(-1) == targets) & graded
    return correct.sum().item() / max(graded.sum().item(), 1)


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Accuracy of ``model`` on ``(inputs, targets)``, in evaluation mode.

    Args:
        model: maps inputs (N, L) to logits (N, L, C) or (N, C).
        inputs: (N, L) token ids.
        targets: (N, L) or (N,) class ids.
    """
    was_training = model.training
    model.eval()
    graded = correct = 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size])
        batch_targets = targets[start : start + batch_size]
        mask = batch_targets != IGNORE
        correct += ((logits.argmax(-1) == batch_targets) & mask).sum().item()
        graded += mask.sum().item()
    model.train(was_training)
    return correct / max(graded, 1)


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    eval_every: int = 50,
    log_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train with AdamW and cross-entropy on random batches; return the history.

    Args:
        model: maps inputs (B, L) to logits (B, L, C) (tagging) or (B, C) (classification).
        inputs: (N, L) training token ids.
        targets: (N, L) or (N,) class ids; :data:`~transformer_lib.data.IGNORE` is skipped.
        steps: number of optimisation steps.
        batch_size: sequences per step, drawn at random (seeded).
        lr: peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: the learning rate rises linearly from 0 over these steps, then stays.
        eval_data: held-out ``(inputs, targets)`` evaluated every ``eval_every`` steps and
            at the end.
        eval_every: steps between evaluations.
        log_every: steps between training-loss records.
        seed: seeds the batch order, dropout and any other random draw during training.
            The global random state is left exactly as it was found, so calling
            ``train`` does not change what the rest of a program draws.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`History`.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in length: {len(inputs)} vs {len(targets)}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    devices = [p.device for p in model.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted(set(devices), key=str)):
        torch.manual_seed(seed)
        return _train_loop(
            model,
            inputs,
            targets,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            eval_data=eval_data,
            eval_every=eval_every,
            log_every=log_every,
            seed=seed,
            progress=progress,
        )


def _train_loop(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None,
    eval_every: int,
    log_every: int,
    seed: int,
    progress: bool,
) -> History:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    )
    history = History()
    model.train()
    bar = tqdm(range(1, steps + 1), disable=not progress, desc="training")
    for step in bar:
        index = torch.randint(len(inputs), (batch_size,), generator=generator)
        logits = model(inputs[index])
        loss = F.cross_entropy(logits.flatten(0, -2), targets[index].flatten(), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == 1:
            history.step.append(step)
            history.loss.append(loss.item())
            history.lr.append(schedule.get_last_lr()[0])
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        schedule.step()
        if eval_data is not None and (step % eval_every == 0 or step == steps):
            history.eval_step.append(step)
            history.eval_accuracy.append(evaluate(model, *eval_data))
    model.eval()
    return history
