"""Plotting helpers: they draw what they are given and reject mismatched labels."""

import re
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from transformer_lib import plot_attention  # noqa: E402


def test_plot_attention_draws_labelled_heatmap():
    weights = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = plot_attention(weights, ["a", "b", "c", "d"], ["x", "y", "z"], title="t", annotate=True)
    image = ax.get_images()[0]
    assert image.get_array().shape == (3, 4)
    torch.testing.assert_close(torch.as_tensor(image.get_array().data), weights)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert ax.get_title() == "t"
    assert len(ax.texts) == 12
    plt.close("all")


def test_plot_attention_self_attention_labels_default_to_keys():
    ax = plot_attention(torch.eye(2), ["p", "q"], colorbar=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["p", "q"]
    plt.close("all")


def test_plot_attention_errors():
    with pytest.raises(ValueError, match=r"weights must be \(L_q, L_k\), got shape \(2, 2, 2\)"):
        plot_attention(torch.ones(2, 2, 2), ["a", "b"])
    with pytest.raises(ValueError, match="weights are 2×3 .* got 2 query labels and 2 key labels"):
        plot_attention(torch.ones(2, 3), ["a", "b"])
    plt.close("all")


def test_use_hangul_font_draws_korean_without_missing_glyphs(tmp_path):
    """The chapters' Korean labels need a Hangul font (make test's machines have one)."""
    from transformer_lib.viz import HANGUL_FONTS, use_hangul_font

    saved = plt.rcParams["font.family"]
    try:
        family = use_hangul_font()
        assert family in HANGUL_FONTS
        assert plt.rcParams["font.family"] == ["DejaVu Sans", family]
        fig, ax = plt.subplots()
        ax.set_title("셀프 어텐션 가중치 −1")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would raise
            fig.savefig(tmp_path / "hangul.png")
        plt.close(fig)
    finally:
        plt.rcParams["font.family"] = saved


def test_use_hangul_font_without_one_says_how_to_install_it(monkeypatch):
    from matplotlib import font_manager

    from transformer_lib import viz

    monkeypatch.setattr(font_manager.fontManager, "ttflist", [])
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *args, **kwargs: [])
    with pytest.raises(RuntimeError, match=re.escape("apt-get install fonts-noto-cjk")):
        viz.use_hangul_font()
