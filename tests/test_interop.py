"""Converters to and from PyTorch's modules (transformer_lib.interop): exact, on the source's
device and dtype, every eps copied, and a clear refusal of what cannot be represented."""

import re

import pytest
import torch
from torch import nn

from transformer_lib import EncoderLayer, MultiHeadAttention, TransformerEncoder
from transformer_lib.interop import (
    ENCODER_LAYER_NAMES,
    IN_PROJ,
    MULTI_HEAD_NAMES,
    encoder_from_torch,
    encoder_layer_from_torch,
    multi_head_from_torch,
)

D, H, D_FF = 16, 4, 32


def randomise_(module):
    """Non-trivial LayerNorms and biases, so that a wrong copy shows in the numbers."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(mean=1.0 if name.endswith("weight") else 0.0, std=0.2)
    return module


def torch_layer(*, dtype=torch.float32, device=None, **options):
    torch.manual_seed(0)
    options = {"batch_first": True, "dropout": 0.1, **options}
    layer = nn.TransformerEncoderLayer(D, H, D_FF, dtype=dtype, device=device, **options)
    return randomise_(layer) if device != "meta" else layer


def torch_encoder(*, norm_first, dtype=torch.float32, device=None, eps=1e-5, **options):
    layer = torch_layer(dtype=dtype, device=device, norm_first=norm_first, **options)
    norm = nn.LayerNorm(D, eps=eps, dtype=dtype, device=device) if norm_first else None
    encoder = nn.TransformerEncoder(layer, 2, norm=norm, enable_nested_tensor=False)
    if device != "meta":
        randomise_(encoder)
    return encoder.eval()


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and sa[name].device == sb[name].device, name
        assert torch.equal(sa[name], sb[name]), name


# ---------------------------------------------------------------- the name tables


def test_name_tables_cover_every_parameter():
    ours = MultiHeadAttention(D, H).state_dict()
    covered = set(MULTI_HEAD_NAMES) | {name for names in IN_PROJ.values() for name in names}
    assert covered == set(ours)
    layer = EncoderLayer(D, H, D_FF).state_dict()
    attention = {f"self_attn.{name}" for name in covered}
    assert attention | set(ENCODER_LAYER_NAMES) == set(layer)
    theirs = nn.TransformerEncoderLayer(D, H, D_FF, batch_first=True).state_dict()
    assert set(ENCODER_LAYER_NAMES.values()) <= set(theirs)


# ---------------------------------------------------------------- exact, on the source's device and dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_multi_head_round_trip_is_exact(dtype, bias):
    torch.manual_seed(0)
    theirs = randomise_(nn.MultiheadAttention(D, H, bias=bias, batch_first=True, dtype=dtype))
    ours = MultiHeadAttention.from_torch(theirs)
    assert all(p.dtype == dtype for p in ours.parameters())
    back = ours.to_torch()
    assert_same_state(back, theirs)
    if dtype != torch.bfloat16:
        x = torch.randn(2, 5, D, dtype=dtype)
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("bias", [True, False])
def test_float64_layer_round_trip_is_exact(norm_first, activation, bias):
    theirs = torch_layer(
        dtype=torch.float64, norm_first=norm_first, activation=activation, bias=bias
    ).eval()
    ours = EncoderLayer.from_torch(theirs).eval()
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    x = torch.randn(3, 6, D, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=1e-12)
    assert_same_state(ours.to_torch(), theirs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_float64_encoder_round_trip_is_exact(norm_first):
    theirs = torch_encoder(norm_first=norm_first, dtype=torch.float64)
    ours = TransformerEncoder.from_torch(theirs).eval()
    x = torch.randn(3, 6, D, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=1e-12)
    back = ours.to_torch()
    assert_same_state(back, theirs)
    assert_same_state(TransformerEncoder.from_torch(back), ours)


@pytest.mark.parametrize(
    "convert",
    [
        lambda: MultiHeadAttention.from_torch(
            nn.MultiheadAttention(D, H, batch_first=True, device="meta")
        ),
        lambda: EncoderLayer.from_torch(torch_layer(device="meta")),
        lambda: TransformerEncoder.from_torch(torch_encoder(norm_first=True, device="meta")),
        lambda: MultiHeadAttention(D, H).to("meta").to_torch(),
        lambda: EncoderLayer(D, H, D_FF).to("meta").to_torch(),
        lambda: TransformerEncoder(2, D, H, D_FF, norm_first=True).to("meta").to_torch(),
    ],
    ids=["mha", "layer", "encoder", "mha-to", "layer-to", "encoder-to"],
)
def test_result_is_on_the_sources_device(convert):
    """The meta device stands in for a GPU: nothing is created on the CPU and moved."""
    module = convert()
    assert {p.device.type for p in module.parameters()} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip_stays_on_cuda():
    theirs = torch_encoder(norm_first=True).cuda()
    ours = TransformerEncoder.from_torch(theirs)
    assert {p.device.type for p in ours.parameters()} == {"cuda"}
    assert_same_state(ours.to_torch(), theirs)


def test_conversion_draws_no_random_numbers_and_copies():
    """No throwaway initialisation: converting does not touch the global random state."""
    theirs = torch_encoder(norm_first=False)
    state = torch.get_rng_state()
    ours = TransformerEncoder.from_torch(theirs)
    back = ours.to_torch()
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():  # copies, not shared storage
        theirs.layers[0].linear1.weight.add_(1.0)
    assert not torch.equal(ours.layers[0].ff.linear1.weight, theirs.layers[0].linear1.weight)
    assert not torch.equal(back.layers[0].linear1.weight, theirs.layers[0].linear1.weight)


# ---------------------------------------------------------------- every eps, every dropout


def test_final_norm_eps_is_copied():
    """The issue's case: with the final norm's eps = 0.1 the outputs differed by 0.16."""
    theirs = torch_encoder(norm_first=True, eps=0.1)
    ours = TransformerEncoder.from_torch(theirs).eval()
    assert ours.norm.eps == 0.1 and ours.layers[0].norm1.eps == 1e-5
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(ours(x), theirs(x))
    assert ours.to_torch().norm.eps == 0.1


def test_each_layer_norm_keeps_its_eps_and_each_dropout_its_p():
    theirs = torch_layer(layer_norm_eps=1e-3)
    theirs.norm2.eps = 0.5
    theirs.dropout.p, theirs.dropout1.p, theirs.dropout2.p = 0.2, 0.3, 0.4
    theirs.self_attn.dropout = 0.05
    ours = EncoderLayer.from_torch(theirs.eval()).eval()
    assert (ours.norm1.eps, ours.norm2.eps) == (1e-3, 0.5)
    assert (ours.ff.dropout.p, ours.dropout1.p, ours.dropout2.p) == (0.2, 0.3, 0.4)
    assert ours.self_attn.dropout == 0.05
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(ours(x), theirs(x))
    back = ours.to_torch()
    assert (back.norm1.eps, back.norm2.eps) == (1e-3, 0.5)
    assert (back.dropout.p, back.dropout1.p, back.dropout2.p, back.self_attn.dropout) == (
        0.2,
        0.3,
        0.4,
        0.05,
    )


# ---------------------------------------------------------------- refusals


def with_norm(norm):
    layer = torch_layer()
    layer.norm2 = norm
    return layer


REFUSED_LAYERS = {
    "tanh-gelu": (
        lambda: torch_layer(activation=nn.GELU("tanh")),
        "unsupported activation; transformer_lib's feed-forward has relu and exact (erf) gelu",
    ),
    "sigmoid": (lambda: torch_layer(activation=torch.sigmoid), "unsupported activation"),
    "non-affine": (
        lambda: with_norm(nn.LayerNorm(D, elementwise_affine=False)),
        "layer.norm2 has elementwise_affine=False",
    ),
    "bias-free-norm": (
        lambda: with_norm(nn.LayerNorm(D, bias=False)),
        "layer.norm2 has bias=False but the linear maps have bias=True",
    ),
    "rmsnorm": (lambda: with_norm(nn.RMSNorm(D)), "layer.norm2 is RMSNorm"),
    "batch_first=False": (
        lambda: torch_layer(batch_first=False),
        "nn.MultiheadAttention with batch_first=False: transformer_lib's modules are batch-first",
    ),
}


@pytest.mark.parametrize("case", REFUSED_LAYERS, ids=list(REFUSED_LAYERS))
def test_layer_that_cannot_be_represented_is_refused(case):
    make, message = REFUSED_LAYERS[case]
    with pytest.raises(ValueError, match=re.escape(message)):
        EncoderLayer.from_torch(make())


@pytest.mark.parametrize("case", REFUSED_LAYERS, ids=list(REFUSED_LAYERS))
def test_encoder_of_such_layers_is_refused(case):
    make, message = REFUSED_LAYERS[case]
    encoder = nn.TransformerEncoder(make(), 2, enable_nested_tensor=False)
    with pytest.raises(ValueError, match=re.escape(message.replace("layer.", "layers.0."))):
        TransformerEncoder.from_torch(encoder)


def test_batch_first_false_was_silently_different_and_is_now_refused():
    """The same tensor means (L, B, d) to torch's module and (B, L, d) to ours."""
    theirs = nn.MultiheadAttention(D, H)  # batch_first=False, torch's default
    with pytest.raises(ValueError, match=re.escape("batch_first=False")):
        MultiHeadAttention.from_torch(theirs)
    with pytest.raises(ValueError, match=re.escape("batch_first=False")):
        multi_head_from_torch(theirs)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True),
            "kdim and vdim must equal embed_dim, got embed_dim=8, kdim=4, vdim=4",
        ),
        (nn.MultiheadAttention(8, 2, add_bias_kv=True, batch_first=True), "add_bias_kv"),
        (nn.MultiheadAttention(8, 2, add_zero_attn=True, batch_first=True), "add_zero_attn"),
    ],
    ids=["kdim", "bias_kv", "zero_attn"],
)
def test_multi_head_that_cannot_be_represented_is_refused(module, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention.from_torch(module)


def test_encoder_final_norm_rules():
    pre = torch_layer(norm_first=True)
    with pytest.raises(ValueError, match=re.escape("a pre-LN (norm_first=True) encoder: needs")):
        TransformerEncoder.from_torch(nn.TransformerEncoder(pre, 2, enable_nested_tensor=False))
    post = nn.TransformerEncoder(torch_layer(), 2, norm=nn.LayerNorm(D), enable_nested_tensor=False)
    with pytest.raises(ValueError, match=re.escape("a post-LN (norm_first=False) encoder")):
        TransformerEncoder.from_torch(post)
    rms = nn.TransformerEncoder(pre, 2, norm=nn.RMSNorm(D), enable_nested_tensor=False)
    with pytest.raises(ValueError, match=re.escape("norm is RMSNorm")):
        TransformerEncoder.from_torch(rms)


def test_encoder_of_different_layers_is_refused():
    encoder = torch_encoder(norm_first=False)
    encoder.layers[1] = torch_layer(activation="gelu")
    with pytest.raises(ValueError, match=re.escape("layers.1 differs from layers.0")):
        encoder_from_torch(encoder)


@pytest.mark.parametrize(
    "convert",
    [MultiHeadAttention.from_torch, encoder_layer_from_torch, encoder_from_torch],
    ids=["mha", "layer", "encoder"],
)
def test_wrong_module_type(convert):
    with pytest.raises(TypeError, match=re.escape("expected a torch.nn.")):
        convert(nn.Linear(2, 2))
