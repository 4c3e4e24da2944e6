"""Chapter 5: the by-hand numbers, asserted against the library."""

import math

import pytest
import torch

from transformer_lib.worked_example import encoder_layer_steps, humane_encoder_layer, humane_input


@pytest.fixture(scope="module")
def steps():
    with torch.no_grad():
        return encoder_layer_steps(humane_encoder_layer(), humane_input())


def test_final_step_is_the_layer_output(steps):
    layer = humane_encoder_layer()
    with torch.no_grad():
        torch.testing.assert_close(steps["LayerNorm 2"], layer(humane_input())[0])


def test_the_integer_steps_by_hand(steps):
    # X W_Q^T, split: head 0 takes features 0-1, head 1 features 2-3
    assert steps["Q (head 0)"].tolist() == [[1, 0], [0, 2], [1, 1], [0, 0]]
    assert steps["K (head 0)"].tolist() == [[2, 0], [0, 2], [1, 1], [1, 0]]
    assert steps["scores (head 0)"].tolist() == [
        [2, 0, 1, 1],
        [0, 4, 2, 0],
        [2, 2, 2, 1],
        [0, 0, 0, 0],
    ]
    assert steps["scores (head 1)"].tolist() == [
        [1, 0, 0, 1],
        [1, 1, 1, 2],
        [0, 0, 0, 0],
        [3, 2, 2, 5],
    ]


def test_softmax_row_by_hand(steps):
    # row 3 of head 0 has four equal scores: uniform weights
    assert steps["weights (head 0)"][3].tolist() == [0.25] * 4
    # row 0 of head 0: scores (2, 0, 1, 1) / sqrt(2)
    e = [math.exp(s / math.sqrt(2)) for s in (2, 0, 1, 1)]
    expected = [x / sum(e) for x in e]
    torch.testing.assert_close(
        steps["weights (head 0)"][0], torch.tensor(expected, dtype=torch.float64)
    )


def test_layer_norm_rows(steps):
    for name in ("LayerNorm 1", "LayerNorm 2"):
        rows = steps[name]
        torch.testing.assert_close(rows.mean(-1), torch.zeros(4, dtype=torch.float64))
        torch.testing.assert_close(
            rows.var(-1, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-4, rtol=0
        )


def test_relu_zeroes_negatives(steps):
    hidden, relu = steps["FFN hidden"], steps["ReLU"]
    assert torch.equal(relu, hidden.clamp(min=0))


def test_errors():
    layer = humane_encoder_layer()
    with pytest.raises(ValueError, match="post-LN layer in evaluation mode"):
        encoder_layer_steps(layer.train(), humane_input())
    with pytest.raises(ValueError, match=r"x must be \(1, L, d_model\), got \(2, 4, 4\)"):
        encoder_layer_steps(layer.eval(), humane_input().expand(2, 4, 4))
