"""Chapter 6's training loop: a short seeded run must learn a small task."""

import pytest
import torch

from transformer_lib import EncoderConfig, TokenTagger
from transformer_lib.data import reversal_task
from transformer_lib.training import accuracy, evaluate, train


def test_accuracy_ignores_ungraded_positions():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]])
    assert accuracy(logits, torch.tensor([[0, 0, -100]])) == 0.5


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
        torch.manual_seed(0)
        model = TokenTagger(
            EncoderConfig(vocab_size=5, d_model=8, n_heads=2, d_ff=16, n_layers=1), 5
        )
        return train(model, *reversal_task(100, 4, 5), steps=5, progress=False).loss

    assert run() == run()


def test_bad_arguments():
    model = TokenTagger(EncoderConfig(vocab_size=5, d_model=8, n_heads=2, d_ff=16, n_layers=1), 5)
    x, y = reversal_task(10, 4, 5)
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        train(model, x, y, steps=0)
    with pytest.raises(ValueError, match="inputs and targets differ in length: 10 vs 9"):
        train(model, x, y[:9], steps=1)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0, got -1"):
        train(model, x, y, steps=1, warmup_steps=-1)
