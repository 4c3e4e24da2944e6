"""Chapter 6: a minimal training loop for token tagging and sequence classification."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from transformer_lib.data import IGNORE

__all__ = ["History", "evaluate", "train"]


@dataclass
class History:
    """What :func:`train` records, for plotting."""

    step: list[int] = field(default_factory=list)  # step of each training-loss record
    loss: list[float] = field(default_factory=list)  # training loss at that step
    lr: list[float] = field(default_factory=list)  # learning rate at that step
    eval_step: list[int] = field(default_factory=list)  # step of each evaluation
    eval_accuracy: list[float] = field(default_factory=list)  # held-out accuracy then

    def record(self, step: int, loss: float, lr: float) -> None:
        """Append one training-loss record: the step, its loss and its learning rate."""
        self.step.append(step)
        self.loss.append(loss)
        self.lr.append(lr)


@torch.no_grad()
def evaluate(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int = 512
) -> float:
    """Accuracy of ``model`` on ``(inputs, targets)``, in evaluation mode.

    The fraction of graded targets whose logit is largest; positions whose target is
    :data:`~transformer_lib.data.IGNORE` are not graded. The model's training mode is
    restored afterwards.

    Args:
        model: maps inputs (N, L) to logits (N, L, C) or (N, C).
        inputs: (N, L) token ids.
        targets: (N, L) or (N,) class ids.
        batch_size: sequences per forward pass.

    Raises:
        ValueError: there are no examples or no graded targets, inputs and targets differ
            in length, or ``batch_size`` is not positive.
    """
    _check_examples(inputs, targets)
    _check_positive(batch_size=batch_size)
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
    if graded == 0:
        raise ValueError("evaluate: every target is IGNORE, so there is nothing to grade")
    return correct / graded


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")


def _check_examples(inputs: torch.Tensor, targets: torch.Tensor, name: str = "inputs") -> None:
    if len(inputs) != len(targets):
        owner = "inputs and targets" if name == "inputs" else f"{name}'s inputs and targets"
        raise ValueError(f"{owner} differ in length: {len(inputs)} vs {len(targets)}")
    if len(inputs) == 0:
        raise ValueError(f"{name} holds no examples (length 0)")


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

    Raises:
        ValueError: an argument is out of range (the message names it and its value), or
            ``inputs``/``eval_data`` hold no examples.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    _check_examples(inputs, targets)
    _check_positive(batch_size=batch_size, eval_every=eval_every, log_every=log_every)
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if eval_data is not None:
        _check_examples(*eval_data, name="eval_data")
    with _seeded(model, seed):
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


@contextlib.contextmanager
def _seeded(model: nn.Module, seed: int):
    """Seed the CPU generator and those of the accelerators ``model`` lives on, restoring
    each afterwards. Generators the model does not use are neither seeded nor touched
    (unlike ``torch.manual_seed``, which reseeds every device)."""
    device_types = {p.device.type for p in model.parameters()} - {"cpu", "meta"}
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=[]))
        torch.random.default_generator.manual_seed(seed)
        for device_type in sorted(device_types):
            indices = sorted(
                {p.device.index or 0 for p in model.parameters() if p.device.type == device_type}
            )
            stack.enter_context(torch.random.fork_rng(devices=indices, device_type=device_type))
            module = getattr(torch, device_type)
            for index in indices:
                with (
                    module.device(index) if hasattr(module, "device") else contextlib.nullcontext()
                ):
                    module.manual_seed(seed)
        yield


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
            history.record(step, loss.item(), schedule.get_last_lr()[0])
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        schedule.step()
        if eval_data is not None and (step % eval_every == 0 or step == steps):
            history.eval_step.append(step)
            history.eval_accuracy.append(evaluate(model, *eval_data))
    model.eval()
    return history
