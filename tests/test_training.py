"""Chapter 6's training loop: a short seeded run must learn a small task."""

import re

import pytest
import torch
from torch import nn

from transformer_lib import EncoderConfig, TokenTagger
from transformer_lib.data import IGNORE, reversal_task
from transformer_lib.training import evaluate, train


class FixedLogits(nn.Module):
    """A 'model' that returns given logits for the rows it is asked about (inputs are row ids)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, rows):
        return self.logits[rows[:, 0]]


def test_evaluate_ignores_ungraded_positions_across_batches():
    logits = torch.tensor(
        [[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], [[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]]
    )
    targets = torch.tensor([[0, 0, IGNORE], [1, 1, IGNORE]])
    rows = torch.arange(2)[:, None].expand(2, 3)
    model = FixedLogits(logits).train()
    assert evaluate(model, rows, targets) == 0.5  # 2 of 4 graded
    assert evaluate(model, rows, targets, batch_size=1) == 0.5
    assert model.training  # mode restored


def tiny_model():
    torch.manual_seed(0)
    return TokenTagger(EncoderConfig(vocab_size=5, d_model=8, n_heads=2, d_ff=16, n_layers=1), 5)


def test_short_seeded_run_learns_reversal():
    """Reversal of 6 tokens over 8 symbols: above 95% held-out accuracy within 400 steps."""
    torch.manual_seed(0)
    model = TokenTagger(
        EncoderConfig(
            vocab_size=9,
            d_model=32,
            n_heads=4,
            d_ff=64,
            n_layers=2,
            max_len=6,
            positional="learned",
            dropout=0.0,
            norm_first=True,
        ),
        n_tags=9,
    )
    train_data = reversal_task(2000, 6, 9, seed=1)
    held_out = reversal_task(500, 6, 9, seed=2)
    before = evaluate(model, *held_out)
    history = train(
        model,
        *train_data,
        steps=400,
        batch_size=64,
        lr=3e-3,
        warmup_steps=20,
        eval_data=held_out,
        eval_every=100,
        progress=False,
    )
    assert before < 0.3
    assert history.eval_accuracy[-1] > 0.95, history.eval_accuracy
    assert history.loss[-1] < history.loss[0] / 5
    assert history.eval_step == [100, 200, 300, 400]
    assert history.lr[0] == pytest.approx(3e-3 / 20) and history.lr[-1] == pytest.approx(3e-3)
    assert not model.training


def test_training_is_deterministic():
    def run():
        return train(tiny_model(), *reversal_task(100, 4, 5), steps=5, progress=False).loss

    assert run() == run()


def test_train_leaves_the_global_random_state_alone_and_follows_its_seed():
    data = reversal_task(100, 4, 5)
    model_a, model_b = tiny_model(), tiny_model()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = train(model_a, *data, steps=5, seed=7, progress=False)
    assert torch.equal(torch.get_rng_state(), before)  # train() used to reseed it
    torch.manual_seed(999)  # whatever the global state, the seed decides
    b = train(model_b, *data, steps=5, seed=7, progress=False)
    assert a.loss == b.loss
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)
    c = train(tiny_model(), *data, steps=5, seed=8, progress=False)
    assert c.loss != a.loss


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "steps must be at least 1, got 0"),
        ({"targets": slice(9)}, "inputs and targets differ in length: 10 vs 9"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0, got -1"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got batch_size=0"),
        ({"log_every": 0}, "log_every must be a positive integer, got log_every=0"),
        ({"eval_every": 0}, "eval_every must be a positive integer, got eval_every=0"),
        ({"inputs": slice(0), "targets": slice(0)}, "inputs holds no examples (length 0)"),
        ({"eval_data": slice(0)}, "eval_data holds no examples (length 0)"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_bad_arguments(change, message):
    """Each used to crash deep inside PyTorch or to record NaN; now it names the argument."""
    x, y = reversal_task(10, 4, 5)
    change = dict(change)
    inputs = x[change.pop("inputs", slice(None))]
    targets = y[change.pop("targets", slice(None))]
    if "eval_data" in change:
        rows = change.pop("eval_data")
        change["eval_data"] = (x[rows], y[rows])
    options = {"steps": 1, "progress": False, **change}
    with pytest.raises(ValueError, match=re.escape(message)):
        train(tiny_model(), inputs, targets, **options)


@pytest.mark.parametrize(
    ("rows", "options", "message"),
    [
        (slice(0), {}, "inputs holds no examples (length 0)"),
        (slice(None), {"batch_size": 0}, "batch_size must be a positive integer, got batch_size=0"),
    ],
    ids=["empty", "batch_size"],
)
def test_evaluate_bad_arguments(rows, options, message):
    x, y = reversal_task(10, 4, 5)
    with pytest.raises(ValueError, match=re.escape(message)):
        evaluate(tiny_model(), x[rows], y[rows], **options)


def test_evaluate_with_nothing_graded_is_an_error():
    x, y = reversal_task(10, 4, 5)
    with pytest.raises(ValueError, match=re.escape("every target is IGNORE")):
        evaluate(tiny_model(), x, torch.full_like(y, IGNORE))
