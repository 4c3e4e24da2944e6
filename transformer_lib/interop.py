"""Conversions between transformer_lib's modules and PyTorch's, in one place.

Every converter is driven by an explicit name table (which of our parameters is which of
theirs); the one special case is PyTorch's packed input projection ``in_proj``, split into
our ``q_proj``, ``k_proj`` and ``v_proj`` (:data:`IN_PROJ`). The result is built directly on
the source's device and in its dtype (first on the ``meta`` device, then given copies of the
source's tensors), so nothing is initialised only to be overwritten, and round trips are
exact (``torch.equal``) in every dtype. Each LayerNorm's ``eps`` and each dropout
probability is copied one by one.

What cannot be represented is refused with a :class:`ValueError` that says what and why:
``batch_first=False`` (our modules are batch-first, so the same tensor would mean something
else), activations other than ReLU and exact (erf) GELU, norms other than an affine
``nn.LayerNorm`` over the last axis (``nn.RMSNorm``, ``elementwise_affine=False``), and
layers whose norms and linear maps disagree about biases.

The classmethods :meth:`MultiHeadAttention.from_torch
<transformer_lib.multi_head.MultiHeadAttention.from_torch>`, ``to_torch`` and those of
:class:`~transformer_lib.encoder.EncoderLayer` and
:class:`~transformer_lib.encoder.TransformerEncoder` are the public entry points; they
call the functions here.
"""

from __future__ import annotations

from typing import NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from transformer_lib.decoder import DecoderLayer, TransformerDecoder
from transformer_lib.encoder import EncoderLayer, TransformerEncoder
from transformer_lib.multi_head import MultiHeadAttention

__all__ = [
    "ENCODER_LAYER_NAMES",
    "IN_PROJ",
    "LAYER_SETTINGS",
    "MULTI_HEAD_NAMES",
    "encoder_from_torch",
    "encoder_layer_from_torch",
    "encoder_layer_to_torch",
    "encoder_to_torch",
    "multi_head_from_torch",
    "multi_head_to_torch",
]

#: Our :class:`~transformer_lib.multi_head.MultiHeadAttention` parameter -> its name in
#: ``torch.nn.MultiheadAttention``, besides the packed input projection (:data:`IN_PROJ`).
MULTI_HEAD_NAMES = {
    "out_proj.weight": "out_proj.weight",
    "out_proj.bias": "out_proj.bias",
}

#: ``torch.nn.MultiheadAttention``'s packed input projection -> our three parameters, in its
#: row order (query, key, value): ``in_proj_weight`` is (3 d_model, d_model).
IN_PROJ = {
    "in_proj_weight": ("q_proj.weight", "k_proj.weight", "v_proj.weight"),
    "in_proj_bias": ("q_proj.bias", "k_proj.bias", "v_proj.bias"),
}

#: Our :class:`~transformer_lib.encoder.EncoderLayer` parameter -> its name in
#: ``torch.nn.TransformerEncoderLayer``, besides ``self_attn`` (converted as above).
ENCODER_LAYER_NAMES = {
    "ff.linear1.weight": "linear1.weight",
    "ff.linear1.bias": "linear1.bias",
    "ff.linear2.weight": "linear2.weight",
    "ff.linear2.bias": "linear2.bias",
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
}


#: What a layer keeps outside its state dict, copied one by one, as triples (our submodule,
#: torch's submodule, attribute). Each LayerNorm has its own eps and each dropout its own p.
LAYER_SETTINGS = (
    ("norm1", "norm1", "eps"),
    ("norm2", "norm2", "eps"),
    ("self_attn", "self_attn", "dropout"),
    ("ff.dropout", "dropout", "p"),
    ("dropout1", "dropout1", "p"),
    ("dropout2", "dropout2", "p"),
)


# ---------------------------------------------------------------- state dicts, by the tables


def _copies(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in state.items()}


def _multi_head_state_from_torch(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {o: theirs[t] for o, t in MULTI_HEAD_NAMES.items() if t in theirs}
    for packed, pieces in IN_PROJ.items():
        if packed in theirs:
            ours |= dict(zip(pieces, theirs[packed].chunk(3), strict=True))
    return ours


def _multi_head_state_to_torch(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    theirs = {t: ours[o] for o, t in MULTI_HEAD_NAMES.items() if o in ours}
    for packed, pieces in IN_PROJ.items():
        if pieces[0] in ours:
            theirs[packed] = torch.cat([ours[piece] for piece in pieces])
    return theirs


def _layer_state_from_torch(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    attention = {
        k.removeprefix("self_attn."): v for k, v in theirs.items() if k.startswith("self_attn.")
    }
    ours = {f"self_attn.{k}": v for k, v in _multi_head_state_from_torch(attention).items()}
    return ours | {o: theirs[t] for o, t in ENCODER_LAYER_NAMES.items() if t in theirs}


def _layer_state_to_torch(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    attention = {
        k.removeprefix("self_attn."): v for k, v in ours.items() if k.startswith("self_attn.")
    }
    theirs = {f"self_attn.{k}": v for k, v in _multi_head_state_to_torch(attention).items()}
    return theirs | {t: ours[o] for o, t in ENCODER_LAYER_NAMES.items() if o in ours}


def _per_layer(state: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    prefix = f"layers.{i}."
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _load(module: nn.Module, state: dict[str, torch.Tensor], source: nn.Module) -> nn.Module:
    """Give a module built on the meta device copies of ``state``; same mode as ``source``."""
    module.load_state_dict(_copies(state), strict=True, assign=True)
    return module.train(source.training)


# ---------------------------------------------------------------- checks


def _refuse(what: str, why: str) -> NoReturn:
    raise ValueError(f"{what}: {why}")


def _check_batch_first(module: nn.Module, owner: str) -> None:
    if not module.batch_first:
        _refuse(
            f"{owner} with batch_first=False",
            "transformer_lib's modules are batch-first, so the same tensor would be read as "
            "another shape; build it with batch_first=True",
        )


def _check_multi_head(module: nn.MultiheadAttention) -> None:
    if not isinstance(module, nn.MultiheadAttention):
        raise TypeError(f"expected a torch.nn.MultiheadAttention, got {type(module).__name__}")
    _check_batch_first(module, "nn.MultiheadAttention")
    if not module._qkv_same_embed_dim:
        _refuse(
            "nn.MultiheadAttention with kdim/vdim",
            "kdim and vdim must equal embed_dim, got "
            f"embed_dim={module.embed_dim}, kdim={module.kdim}, vdim={module.vdim}",
        )
    if module.bias_k is not None or module.add_zero_attn:
        _refuse(
            "nn.MultiheadAttention with add_bias_kv or add_zero_attn",
            "transformer_lib's attention has no extra key/value rows",
        )
    if (module.in_proj_bias is None) != (module.out_proj.bias is None):
        _refuse(
            "nn.MultiheadAttention with a bias on only some projections",
            "transformer_lib's bias option covers all four projections",
        )


def _activation_name(layer: nn.TransformerEncoderLayer) -> str:
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (
        isinstance(activation, nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    _refuse(
        f"activation {activation!r}",
        "unsupported activation; transformer_lib's feed-forward has relu and exact (erf) "
        "gelu only (the tanh approximation gives other numbers)",
    )


def _check_norm(norm: nn.Module, name: str, d_model: int, bias: bool) -> None:
    if type(norm) is not nn.LayerNorm:
        _refuse(
            f"{name} is {type(norm).__name__}",
            "transformer_lib's layers use nn.LayerNorm (mean and variance); "
            "an RMSNorm or another norm computes something else",
        )
    if tuple(norm.normalized_shape) != (d_model,):
        _refuse(
            f"{name} normalises over {tuple(norm.normalized_shape)}",
            f"expected the last axis only, ({d_model},)",
        )
    if not norm.elementwise_affine:
        _refuse(f"{name} has elementwise_affine=False", "transformer_lib's LayerNorms are affine")
    if (norm.bias is not None) != bias:
        _refuse(
            f"{name} has bias={norm.bias is not None} but the linear maps have bias={bias}",
            "transformer_lib's bias option covers the linear maps and the LayerNorms together",
        )


def _layer_options(layer: nn.TransformerEncoderLayer, name: str) -> dict:
    """The constructor arguments of our EncoderLayer for a torch layer; refuses the rest."""
    if not isinstance(layer, nn.TransformerEncoderLayer):
        raise TypeError(
            f"{name}: expected a torch.nn.TransformerEncoderLayer, got {type(layer).__name__}"
        )
    _check_multi_head(layer.self_attn)
    _check_batch_first(layer.self_attn, f"{name}: nn.TransformerEncoderLayer")
    d_model = layer.self_attn.embed_dim
    bias = layer.linear1.bias is not None
    if (layer.linear2.bias is not None) != bias or (
        layer.self_attn.in_proj_bias is not None
    ) != bias:
        _refuse(
            f"{name} has a bias on only some linear maps",
            "transformer_lib's bias option covers all of them together",
        )
    for norm_name in ("norm1", "norm2"):
        _check_norm(getattr(layer, norm_name), f"{name}.{norm_name}", d_model, bias)
    return {
        "d_model": d_model,
        "n_heads": layer.self_attn.num_heads,
        "d_ff": layer.linear1.out_features,
        "activation": _activation_name(layer),
        "norm_first": layer.norm_first,
        "bias": bias,
    }


def _copy_settings(source: nn.Module, target: nn.Module, *, source_is_ours: bool) -> None:
    """Copy each LayerNorm's eps and each dropout probability of a layer, one by one."""
    for ours, theirs, attribute in LAYER_SETTINGS:
        source_path, target_path = (ours, theirs) if source_is_ours else (theirs, ours)
        value = getattr(source.get_submodule(source_path), attribute)
        setattr(target.get_submodule(target_path), attribute, value)


# ---------------------------------------------------------------- nn.MultiheadAttention


def multi_head_from_torch(module: nn.MultiheadAttention) -> MultiHeadAttention:
    """Our :class:`~transformer_lib.multi_head.MultiHeadAttention` with copies of a torch module's weights.

    Args:
        module: a ``torch.nn.MultiheadAttention`` with ``batch_first=True``,
            kdim = vdim = embed_dim, no ``bias_k``/``bias_v`` and ``add_zero_attn=False``.

    Returns:
        A new module on the source's device, in its dtype and training mode.

    Raises:
        ValueError: the module cannot be represented (see the module's docstring).
    """
    _check_multi_head(module)
    with torch.device("meta"):
        ours = MultiHeadAttention(
            module.embed_dim,
            module.num_heads,
            dropout=module.dropout,
            bias=module.in_proj_bias is not None,
        )
    return _load(ours, _multi_head_state_from_torch(module.state_dict()), module)


def multi_head_to_torch(attention: MultiHeadAttention) -> nn.MultiheadAttention:
    """A ``torch.nn.MultiheadAttention(batch_first=True)`` with copies of our module's weights.

    Raises:
        ValueError: the module has a rotary embedding, which torch's has not.
    """
    if attention.rope is not None:
        _refuse("to_torch", "torch.nn.MultiheadAttention has no rotary embeddings")
    theirs = nn.MultiheadAttention(
        attention.d_model,
        attention.n_heads,
        dropout=attention.dropout,
        bias=attention.q_proj.bias is not None,
        batch_first=True,
        device="meta",
    )
    return _load(theirs, _multi_head_state_to_torch(attention.state_dict()), attention)


# ---------------------------------------------------------------- nn.TransformerEncoderLayer


def encoder_layer_from_torch(layer: nn.TransformerEncoderLayer) -> EncoderLayer:
    """Our :class:`~transformer_lib.encoder.EncoderLayer` with copies of a torch layer's weights.

    ``self_attn`` is converted as by :func:`multi_head_from_torch`; the rest follows
    :data:`ENCODER_LAYER_NAMES`. Each LayerNorm keeps its own ``eps``, each dropout its ``p``.

    Raises:
        ValueError: the layer cannot be represented (see the module's docstring).
    """
    options = _layer_options(layer, "layer")
    with torch.device("meta"):
        ours = EncoderLayer(
            options.pop("d_model"), options.pop("n_heads"), options.pop("d_ff"), **options
        )
    _copy_settings(layer, ours, source_is_ours=False)
    return _load(ours, _layer_state_from_torch(layer.state_dict()), layer)


def encoder_layer_to_torch(layer: EncoderLayer) -> nn.TransformerEncoderLayer:
    """A ``torch.nn.TransformerEncoderLayer(batch_first=True)`` with copies of our layer's weights.

    Raises:
        ValueError: the layer has a rotary embedding, which torch's has not.
    """
    theirs = _torch_layer_like(layer)
    return _load(theirs, _layer_state_to_torch(layer.state_dict()), layer)


def _torch_layer_like(layer: EncoderLayer) -> nn.TransformerEncoderLayer:
    """An empty (meta) torch layer with our layer's sizes, eps and dropouts."""
    attention = layer.self_attn
    if attention.rope is not None:
        _refuse("to_torch", "torch.nn.TransformerEncoderLayer has no rotary embeddings")
    theirs = nn.TransformerEncoderLayer(
        attention.d_model,
        attention.n_heads,
        layer.ff.linear1.out_features,
        activation=layer.ff.activation,
        batch_first=True,
        norm_first=layer.norm_first,
        bias=layer.ff.linear1.bias is not None,
        device="meta",
    )
    _copy_settings(layer, theirs, source_is_ours=True)
    return theirs


# ---------------------------------------------------------------- nn.TransformerEncoder


def encoder_from_torch(encoder: nn.TransformerEncoder) -> TransformerEncoder:
    """Our :class:`~transformer_lib.encoder.TransformerEncoder` with copies of a torch encoder's weights.

    Every layer must have the same sizes and options (as ``nn.TransformerEncoder`` makes
    them); each keeps its own LayerNorm ``eps`` and dropouts. A pre-LN encoder must have a
    final ``norm`` (its ``eps`` is copied too), a post-LN one must not, as ours.

    Raises:
        ValueError: the encoder cannot be represented (see the module's docstring).
    """
    if not isinstance(encoder, nn.TransformerEncoder):
        raise TypeError(f"expected a torch.nn.TransformerEncoder, got {type(encoder).__name__}")
    options = [_layer_options(layer, f"layers.{i}") for i, layer in enumerate(encoder.layers)]
    for i, other in enumerate(options[1:], start=1):
        if other != options[0]:
            _refuse(
                f"layers.{i} differs from layers.0 ({other} vs {options[0]})",
                "transformer_lib's TransformerEncoder stacks identical layers",
            )
    first = dict(options[0])
    if first["norm_first"] and encoder.norm is None:
        _refuse("a pre-LN (norm_first=True) encoder", "needs a final norm, as ours has")
    if not first["norm_first"] and encoder.norm is not None:
        _refuse("a post-LN (norm_first=False) encoder", "has no final norm in transformer_lib")
    if encoder.norm is not None:
        _check_norm(encoder.norm, "norm", first["d_model"], first["bias"])
    with torch.device("meta"):
        ours = TransformerEncoder(
            len(options), first.pop("d_model"), first.pop("n_heads"), first.pop("d_ff"), **first
        )
    for our_layer, their_layer in zip(ours.layers, encoder.layers, strict=True):
        _copy_settings(their_layer, our_layer, source_is_ours=False)
    if encoder.norm is not None:
        ours.norm.eps = encoder.norm.eps
    theirs = encoder.state_dict()
    state = {}
    for i in range(len(options)):
        layer_state = _layer_state_from_torch(_per_layer(theirs, i))
        state |= {f"layers.{i}.{name}": tensor for name, tensor in layer_state.items()}
    state |= {name: tensor for name, tensor in theirs.items() if name.startswith("norm.")}
    return _load(ours, state, encoder)


def encoder_to_torch(encoder: TransformerEncoder) -> nn.TransformerEncoder:
    """A ``torch.nn.TransformerEncoder`` of batch-first layers with copies of our weights.

    Each layer keeps its LayerNorm ``eps`` and dropouts; the final norm (pre-LN) its ``eps``.
    """
    layers = list(encoder.layers)
    theirs = nn.TransformerEncoder(
        _torch_layer_like(layers[0]),
        num_layers=len(layers),
        norm=None if encoder.norm is None else _meta_layer_norm(encoder.norm),
        enable_nested_tensor=False,
    )
    for our_layer, their_layer in zip(layers, theirs.layers, strict=True):
        _copy_settings(our_layer, their_layer, source_is_ours=True)
    ours = encoder.state_dict()
    state = {}
    for i in range(len(layers)):
        layer_state = _layer_state_to_torch(_per_layer(ours, i))
        state |= {f"layers.{i}.{name}": tensor for name, tensor in layer_state.items()}
    state |= {name: tensor for name, tensor in ours.items() if name.startswith("norm.")}
    return _load(theirs, state, encoder)


def _meta_layer_norm(norm: nn.LayerNorm) -> nn.LayerNorm:
    return nn.LayerNorm(
        norm.normalized_shape,
        eps=norm.eps,
        elementwise_affine=norm.elementwise_affine,
        bias=norm.bias is not None,
        device="meta",
    )


# ---------------------------------------------------------------- nn.TransformerDecoderLayer
# (Chapter 8.) A decoder layer is an encoder layer plus a cross-attention sublayer and its
# norm3/dropout3; the tables and checks above are reused, extended by these.


__all__ += [
    "DECODER_ATTENTIONS",
    "DECODER_LAYER_NAMES",
    "DECODER_LAYER_SETTINGS",
    "decoder_from_torch",
    "decoder_layer_from_torch",
    "decoder_layer_to_torch",
    "decoder_to_torch",
]

#: Our ``transformer_lib.decoder.DecoderLayer`` attention -> torch's, each converted as
#: by :func:`multi_head_from_torch`.
DECODER_ATTENTIONS = {"self_attn": "self_attn", "cross_attn": "multihead_attn"}

#: Our ``transformer_lib.decoder.DecoderLayer`` parameter -> its name in
#: ``torch.nn.TransformerDecoderLayer``, besides the two attentions.
DECODER_LAYER_NAMES = ENCODER_LAYER_NAMES | {
    "norm3.weight": "norm3.weight",
    "norm3.bias": "norm3.bias",
}

#: As :data:`LAYER_SETTINGS`, for a decoder layer's three norms, two attentions, four dropouts.
DECODER_LAYER_SETTINGS = LAYER_SETTINGS + (
    ("norm3", "norm3", "eps"),
    ("cross_attn", "multihead_attn", "dropout"),
    ("dropout3", "dropout3", "p"),
)


def _decoder_layer_state_from_torch(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    ours = {}
    for our_attention, their_attention in DECODER_ATTENTIONS.items():
        prefix = f"{their_attention}."
        attention = {k.removeprefix(prefix): v for k, v in theirs.items() if k.startswith(prefix)}
        ours |= {
            f"{our_attention}.{k}": v for k, v in _multi_head_state_from_torch(attention).items()
        }
    return ours | {o: theirs[t] for o, t in DECODER_LAYER_NAMES.items() if t in theirs}


def _decoder_layer_state_to_torch(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    theirs = {}
    for our_attention, their_attention in DECODER_ATTENTIONS.items():
        prefix = f"{our_attention}."
        attention = {k.removeprefix(prefix): v for k, v in ours.items() if k.startswith(prefix)}
        theirs |= {
            f"{their_attention}.{k}": v for k, v in _multi_head_state_to_torch(attention).items()
        }
    return theirs | {t: ours[o] for o, t in DECODER_LAYER_NAMES.items() if o in ours}


def _decoder_layer_options(layer: nn.TransformerDecoderLayer, name: str) -> dict:
    """The constructor arguments of our DecoderLayer for a torch layer; refuses the rest."""
    if not isinstance(layer, nn.TransformerDecoderLayer):
        raise TypeError(
            f"{name}: expected a torch.nn.TransformerDecoderLayer, got {type(layer).__name__}"
        )
    for attention in DECODER_ATTENTIONS.values():
        _check_multi_head(getattr(layer, attention))
    d_model = layer.self_attn.embed_dim
    bias = layer.linear1.bias is not None
    biases = (
        layer.linear2.bias is not None,
        layer.self_attn.in_proj_bias is not None,
        layer.multihead_attn.in_proj_bias is not None,
    )
    if any(b != bias for b in biases):
        _refuse(
            f"{name} has a bias on only some linear maps",
            "transformer_lib's bias option covers all of them together",
        )
    if layer.multihead_attn.num_heads != layer.self_attn.num_heads:
        _refuse(
            f"{name} has {layer.self_attn.num_heads} self-attention heads and "
            f"{layer.multihead_attn.num_heads} cross-attention heads",
            "transformer_lib's DecoderLayer uses one n_heads for both",
        )
    for norm_name in ("norm1", "norm2", "norm3"):
        _check_norm(getattr(layer, norm_name), f"{name}.{norm_name}", d_model, bias)
    return {
        "d_model": d_model,
        "n_heads": layer.self_attn.num_heads,
        "d_ff": layer.linear1.out_features,
        "activation": _activation_name(layer),
        "norm_first": layer.norm_first,
        "bias": bias,
    }


def _copy_decoder_settings(source: nn.Module, target: nn.Module, *, source_is_ours: bool) -> None:
    """Copy each LayerNorm's eps and each dropout probability of a decoder layer."""
    for ours, theirs, attribute in DECODER_LAYER_SETTINGS:
        source_path, target_path = (ours, theirs) if source_is_ours else (theirs, ours)
        value = getattr(source.get_submodule(source_path), attribute)
        setattr(target.get_submodule(target_path), attribute, value)


def decoder_layer_from_torch(layer: nn.TransformerDecoderLayer) -> DecoderLayer:
    """Our ``transformer_lib.decoder.DecoderLayer`` with copies of a torch layer's weights.

    ``self_attn`` and ``multihead_attn`` become ``self_attn`` and ``cross_attn``
    (:data:`DECODER_ATTENTIONS`); the rest follows :data:`DECODER_LAYER_NAMES`.

    Raises:
        ValueError: the layer cannot be represented (see the module's docstring).
    """
    options = _decoder_layer_options(layer, "layer")
    with torch.device("meta"):
        ours = DecoderLayer(
            options.pop("d_model"), options.pop("n_heads"), options.pop("d_ff"), **options
        )
    _copy_decoder_settings(layer, ours, source_is_ours=False)
    return _load(ours, _decoder_layer_state_from_torch(layer.state_dict()), layer)


def decoder_layer_to_torch(layer: DecoderLayer) -> nn.TransformerDecoderLayer:
    """A ``torch.nn.TransformerDecoderLayer(batch_first=True)`` with copies of our layer's weights.

    Raises:
        ValueError: the layer has a rotary embedding, which torch's has not.
    """
    theirs = _torch_decoder_layer_like(layer)
    return _load(theirs, _decoder_layer_state_to_torch(layer.state_dict()), layer)


def _torch_decoder_layer_like(layer: DecoderLayer) -> nn.TransformerDecoderLayer:
    """An empty (meta) torch decoder layer with our layer's sizes, eps and dropouts."""
    attention = layer.self_attn
    if attention.rope is not None:
        _refuse("to_torch", "torch.nn.TransformerDecoderLayer has no rotary embeddings")
    theirs = nn.TransformerDecoderLayer(
        attention.d_model,
        attention.n_heads,
        layer.ff.linear1.out_features,
        activation=layer.ff.activation,
        batch_first=True,
        norm_first=layer.norm_first,
        bias=layer.ff.linear1.bias is not None,
        device="meta",
    )
    _copy_decoder_settings(layer, theirs, source_is_ours=True)
    return theirs


# ---------------------------------------------------------------- nn.TransformerDecoder


def decoder_from_torch(decoder: nn.TransformerDecoder) -> TransformerDecoder:
    """Our ``transformer_lib.decoder.TransformerDecoder`` with copies of a torch decoder's weights.

    As :func:`encoder_from_torch`: identical layers, and a final ``norm`` exactly when pre-LN.
    (``nn.Transformer`` gives its post-LN decoder a final norm too; convert its layers one by
    one and apply that norm by hand.)

    Raises:
        ValueError: the decoder cannot be represented (see the module's docstring).
    """
    if not isinstance(decoder, nn.TransformerDecoder):
        raise TypeError(f"expected a torch.nn.TransformerDecoder, got {type(decoder).__name__}")
    options = [
        _decoder_layer_options(layer, f"layers.{i}") for i, layer in enumerate(decoder.layers)
    ]
    for i, other in enumerate(options[1:], start=1):
        if other != options[0]:
            _refuse(
                f"layers.{i} differs from layers.0 ({other} vs {options[0]})",
                "transformer_lib's TransformerDecoder stacks identical layers",
            )
    first = dict(options[0])
    if first["norm_first"] and decoder.norm is None:
        _refuse("a pre-LN (norm_first=True) decoder", "needs a final norm, as ours has")
    if not first["norm_first"] and decoder.norm is not None:
        _refuse("a post-LN (norm_first=False) decoder", "has no final norm in transformer_lib")
    if decoder.norm is not None:
        _check_norm(decoder.norm, "norm", first["d_model"], first["bias"])
    with torch.device("meta"):
        ours = TransformerDecoder(
            len(options), first.pop("d_model"), first.pop("n_heads"), first.pop("d_ff"), **first
        )
    for our_layer, their_layer in zip(ours.layers, decoder.layers, strict=True):
        _copy_decoder_settings(their_layer, our_layer, source_is_ours=False)
    if decoder.norm is not None:
        ours.norm.eps = decoder.norm.eps
    theirs = decoder.state_dict()
    state = {}
    for i in range(len(options)):
        layer_state = _decoder_layer_state_from_torch(_per_layer(theirs, i))
        state |= {f"layers.{i}.{name}": tensor for name, tensor in layer_state.items()}
    state |= {name: tensor for name, tensor in theirs.items() if name.startswith("norm.")}
    return _load(ours, state, decoder)


def decoder_to_torch(decoder: TransformerDecoder) -> nn.TransformerDecoder:
    """A ``torch.nn.TransformerDecoder`` of batch-first layers with copies of our weights."""
    layers = list(decoder.layers)
    theirs = nn.TransformerDecoder(
        _torch_decoder_layer_like(layers[0]),
        num_layers=len(layers),
        norm=None if decoder.norm is None else _meta_layer_norm(decoder.norm),
    )
    for our_layer, their_layer in zip(layers, theirs.layers, strict=True):
        _copy_decoder_settings(our_layer, their_layer, source_is_ours=True)
    ours = decoder.state_dict()
    state = {}
    for i in range(len(layers)):
        layer_state = _decoder_layer_state_to_torch(_per_layer(ours, i))
        state |= {f"layers.{i}.{name}": tensor for name, tensor in layer_state.items()}
    state |= {name: tensor for name, tensor in ours.items() if name.startswith("norm.")}
    return _load(theirs, state, decoder)
