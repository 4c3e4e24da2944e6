"""Chapter 7's library: BERT checkpoints on transformer_lib, against Hugging Face.

transformers and sentence-transformers are references here only; the library never
imports them (checked below).
"""

import json
import re
import subprocess
import sys

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transformer_lib.pretrained import (
    BertConfig,
    BertEncoderModel,
    bert_name_table,
    encode,
    find_minilm,
    load_bert,
    load_tokenizer,
    sentence_embeddings,
)

transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")

BATCHES = [
    ["The cat sat on the mat.", "A dog.", "Attention is all you need, they said in 2017."],
    ["고양이가 매트 위에 앉았다.", "Self-attention 은 Query, Key, Value 를 이용한다.", "ok"],
    ["one", "two words", "three words here", "and now a somewhat longer sentence than the rest"],
]


@pytest.fixture(scope="module")
def minilm_dir():
    return find_minilm()


@pytest.fixture(scope="module")
def ours(minilm_dir):
    return load_bert(minilm_dir)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def hf_model(minilm_dir):
    return transformers.BertModel.from_pretrained(str(minilm_dir)).eval()


def test_find_minilm_has_the_files(minilm_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (minilm_dir / name).is_file()


def test_structure(ours):
    assert len(ours.encoder.layers) == 6 and ours.encoder.norm is None
    layer = ours.encoder.layers[0]
    assert layer.self_attn.n_heads == 12 and layer.ff.activation == "gelu" and not layer.norm_first
    assert layer.norm1.eps == 1e-12
    assert not ours.training


def test_name_table_covers_every_parameter(ours):
    table = bert_name_table(6)
    assert set(table) == set(ours.state_dict())
    assert len(set(table.values())) == len(table)


@pytest.mark.parametrize("sentences", BATCHES)
def test_hidden_states_equal_hugging_face(sentences, ours, tokenizer, hf_model):
    batch = encode(tokenizer, sentences)
    assert (batch["attention_mask"] == 0).any(), "the batch must be padded"
    with torch.no_grad():
        got = ours(**batch)
        expected = hf_model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert (got - expected).abs()[real].max() <= 1e-5


def test_hidden_states_equal_hugging_face_float64_everywhere(ours, tokenizer, hf_model):
    batch = encode(tokenizer, BATCHES[0])
    ours64 = BertEncoderModel(ours.config).eval().double()
    ours64.load_state_dict(ours.state_dict())
    hf64 = transformers.BertModel.from_pretrained(str(find_minilm())).eval().double()
    with torch.no_grad():
        difference = (ours64(**batch) - hf64(**batch).last_hidden_state).abs().max()
    assert difference < 1e-10  # the same function, padded positions included


@pytest.mark.parametrize("sentences", BATCHES)
def test_sentence_embeddings_equal_sentence_transformers(sentences, ours, tokenizer, minilm_dir):
    st = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")
    expected = st.encode(sentences, convert_to_tensor=True)
    batch = encode(tokenizer, sentences)
    with torch.no_grad():
        got = sentence_embeddings(ours(**batch), batch["attention_mask"])
    assert (got - expected).abs().max() <= 1e-5
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(sentences)))


def test_token_type_ids_are_used(ours, tokenizer, hf_model):
    batch = encode(tokenizer, BATCHES[0])
    batch["token_type_ids"][:, 3:] = 1
    with torch.no_grad():
        got, expected = ours(**batch), hf_model(**batch).last_hidden_state
    assert (got - expected).abs()[batch["attention_mask"].bool()].max() <= 1e-5
    with torch.no_grad():
        assert not torch.allclose(got, ours(batch["input_ids"], batch["attention_mask"]))


def test_library_never_imports_transformers():
    code = (
        "import sys, transformer_lib, transformer_lib.pretrained, transformer_lib.training;"
        "bad = [m for m in ('transformers', 'sentence_transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- bad checkpoints

TINY = {
    "vocab_size": 20,
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 10,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
}


def write_checkpoint(folder, config=TINY, edit=None):
    """A tiny random BERT checkpoint in Hugging Face's names; ``edit`` may change the tensors."""
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**TINY))
    tensors = {name: t.contiguous() for name, t in model.state_dict().items()}
    if edit is not None:
        edit(tensors)
    folder.mkdir(exist_ok=True)
    save_file(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))
    return model.eval()


def test_tiny_random_checkpoint_equals_hugging_face(tmp_path):
    reference = write_checkpoint(tmp_path)
    ours = load_bert(tmp_path)
    ids = torch.tensor([[2, 5, 7, 9, 0], [3, 4, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        difference = (ours(ids, mask) - reference(ids, attention_mask=mask).last_hidden_state).abs()
    assert difference[mask.bool()].max() < 1e-5


def test_bert_prefix_is_accepted(tmp_path):
    write_checkpoint(tmp_path, edit=lambda t: t.update({f"bert.{k}": t.pop(k) for k in list(t)}))
    assert isinstance(load_bert(tmp_path), BertEncoderModel)


def test_missing_tensor(tmp_path):
    write_checkpoint(tmp_path, edit=lambda t: t.pop("encoder.layer.1.attention.self.key.weight"))
    with pytest.raises(
        ValueError, match=re.escape("missing tensors: encoder.layer.1.attention.self.key.weight")
    ):
        load_bert(tmp_path)


def test_unexpected_tensor(tmp_path):
    write_checkpoint(
        tmp_path, edit=lambda t: t.update({"encoder.layer.0.extra.weight": torch.zeros(2)})
    )
    with pytest.raises(
        ValueError,
        match=re.escape("unexpected tensors in checkpoint: encoder.layer.0.extra.weight"),
    ):
        load_bert(tmp_path)


def test_wrong_shape(tmp_path):
    def shrink(tensors):
        tensors["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(12, 8)

    write_checkpoint(tmp_path, edit=shrink)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "tensor encoder.layer.0.intermediate.dense.weight has shape (12, 8), "
            "expected (16, 8) for encoder.layers.0.ff.linear1.weight"
        ),
    ):
        load_bert(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "relu"}, "hidden_act='relu' is not supported"),
        ({"hidden_act": "gelu_new"}, "hidden_act='gelu_new' is not supported"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
        ({"is_decoder": True}, "is_decoder=True is not supported"),
        ({"add_cross_attention": True}, "add_cross_attention=True is not supported"),
        ({"pruned_heads": {"0": [1]}}, "pruned_heads={'0': [1]} is not supported"),
        ({"num_attention_heads": 3}, "hidden_size=8 is not divisible by num_attention_heads=3"),
        ({"hidden_size": "8"}, "field 'hidden_size' must be a positive integer, got '8'"),
        ({"hidden_size": "8", "num_attention_heads": "2"}, "field 'hidden_size'"),
        ({"num_hidden_layers": 0}, "field 'num_hidden_layers' must be a positive integer, got 0"),
        ({"layer_norm_eps": "1e-12"}, "field 'layer_norm_eps' must be a number, got '1e-12'"),
        ({"hidden_dropout_prob": 1.5}, "field 'hidden_dropout_prob' must be in [0, 1), got 1.5"),
        ({"rotary_dim": 4}, "unknown field 'rotary_dim'"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_unsupported_or_malformed_config(tmp_path, change, message):
    """Each names the file and the field (a string where a number belongs used to crash)."""
    write_checkpoint(tmp_path, config={**TINY, **change})
    path = str(tmp_path / "config.json")
    with pytest.raises(ValueError, match=re.escape(f"{path}: ")) as error:
        load_bert(tmp_path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2, 3]", ": expected a JSON object, got list"),
        ('"hello"', ": expected a JSON object, got str"),
        ("{not json", ": not valid JSON"),
        ("", ": not valid JSON"),
    ],
    ids=["list", "string", "broken", "empty"],
)
def test_config_that_is_not_an_object(tmp_path, text, message):
    """These used to raise JSONDecodeError or crash while formatting a message."""
    write_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "config.json") + message)):
        load_bert(tmp_path)


def test_config_missing_field(tmp_path):
    config = dict(TINY)
    del config["intermediate_size"]
    write_checkpoint(tmp_path, config=config)
    with pytest.raises(ValueError, match=re.escape("config.json lacks intermediate_size")):
        load_bert(tmp_path)


def test_real_configs_with_hugging_face_fields_are_accepted(minilm_dir):
    config = BertConfig.from_json(minilm_dir / "config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.layer_norm_eps) == (384, 6, 1e-12)
    saved = transformers.BertConfig(**TINY).to_dict()  # every field transformers writes
    assert BertConfig.from_dict(saved) == BertConfig(
        **{k: TINY[k] for k in TINY if k != "hidden_act"}
    )


def test_model_takes_a_bert_config_not_a_dict():
    with pytest.raises(TypeError, match=re.escape("config must be a BertConfig, got dict")):
        BertEncoderModel(dict(TINY))
    config = BertConfig.from_dict({**TINY, "attention_probs_dropout_prob": 0.25})
    model = BertEncoderModel(config)
    assert all(layer.self_attn.dropout == 0.25 for layer in model.encoder.layers)
    assert all(layer.dropout1.p == 0.1 for layer in model.encoder.layers)


# ---------------------------------------------------------------- checkpoints of task models


@pytest.mark.parametrize(
    ("task_model", "ignored"),
    [
        ("BertForMaskedLM", "cls.predictions.transform.dense.weight"),
        ("BertForSequenceClassification", "classifier.weight"),
    ],
)
def test_task_model_checkpoint_loads_its_encoder(tmp_path, task_model, ignored):
    """Real BertFor... checkpoints failed on their head tensors; now the heads are skipped."""
    torch.manual_seed(0)
    reference = getattr(transformers, task_model)(transformers.BertConfig(**TINY)).eval()
    reference.save_pretrained(tmp_path)  # config.json with architectures, dtype, ...
    ours = load_bert(tmp_path)
    assert ignored in ours.ignored_tensors
    assert all(
        name.startswith(("cls.", "classifier.", "bert.pooler.")) for name in ours.ignored_tensors
    )
    ids = torch.tensor([[2, 5, 7, 9, 0], [3, 4, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = reference.bert(ids, attention_mask=mask).last_hidden_state
        difference = (ours(ids, mask) - expected).abs()
    assert difference[mask.bool()].max() < 1e-5


def test_ignored_tensors_of_a_plain_checkpoint(ours):
    assert set(ours.ignored_tensors) <= {
        "embeddings.position_ids",
        "pooler.dense.weight",
        "pooler.dense.bias",
    }
    assert "pooler.dense.weight" in ours.ignored_tensors


def test_duplicate_names_after_prefix_stripping(tmp_path):
    """A checkpoint with both x and bert.x loaded whichever came last."""
    name = "encoder.layer.0.output.dense.bias"
    write_checkpoint(tmp_path, edit=lambda t: t.update({f"bert.{name}": t[name] + 1}))
    with pytest.raises(ValueError, match=re.escape(f"holds both bert.{name} and {name}")):
        load_bert(tmp_path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_non_floating_tensor(tmp_path, dtype):
    """Integer or boolean weights used to load silently as floats."""
    name = "encoder.layer.1.attention.output.dense.weight"
    write_checkpoint(tmp_path, edit=lambda t: t.update({name: t[name].to(dtype)}))
    with pytest.raises(
        ValueError, match=re.escape(f"tensor {name} has dtype {dtype}, expected floating point")
    ):
        load_bert(tmp_path)


def test_half_precision_checkpoint_loads_as_float32(tmp_path):
    reference = write_checkpoint(
        tmp_path, edit=lambda t: t.update({k: v.half() for k, v in t.items()})
    )
    ours = load_bert(tmp_path)
    assert {p.dtype for p in ours.parameters()} == {torch.float32}
    expected = reference.embeddings.word_embeddings.weight.half().float()
    assert torch.equal(ours.embeddings.word_embeddings.weight, expected)


def test_corrupt_weights_file_raises_safetensor_error(tmp_path):
    """Documented in load_bert's Raises."""
    write_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(SafetensorError):
        load_bert(tmp_path)


def test_loading_draws_no_random_numbers(tmp_path):
    write_checkpoint(tmp_path)
    state = torch.get_rng_state()
    load_bert(tmp_path)
    assert torch.equal(torch.get_rng_state(), state)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        load_bert(tmp_path)
    with pytest.raises(FileNotFoundError, match="tokenizer.json not found"):
        load_tokenizer(tmp_path)


def test_weights_come_only_from_safetensors(tmp_path):
    write_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        load_bert(tmp_path)


def test_input_errors(ours):
    with pytest.raises(ValueError, match=re.escape("input_ids must be (B, L), got shape (3,)")):
        ours(torch.tensor([1, 2, 3]))
    with pytest.raises(
        ValueError,
        match=re.escape("attention_mask must have the shape of input_ids (1, 3), got (1, 2)"),
    ):
        ours(torch.tensor([[1, 2, 3]]), torch.ones(1, 2))
    with pytest.raises(
        ValueError,
        match=re.escape("token_type_ids must have the shape of input_ids (1, 3), got (1, 2)"),
    ):
        ours(torch.tensor([[1, 2, 3]]), token_type_ids=torch.zeros(1, 2, dtype=torch.long))


def test_checkpoint_loads_what_the_file_holds(minilm_dir, ours):
    checkpoint = load_file(minilm_dir / "model.safetensors")
    for name, theirs in bert_name_table(6).items():
        assert torch.equal(ours.state_dict()[name], checkpoint[theirs]), name


def test_return_weights_gives_every_layers_weights(ours, tokenizer):
    batch = encode(tokenizer, BATCHES[0])
    with torch.no_grad():
        hidden, weights = ours(**batch, return_weights=True)
        torch.testing.assert_close(hidden, ours(**batch))
    B, L = batch["input_ids"].shape
    assert len(weights) == 6 and all(w.shape == (B, 12, L, L) for w in weights)
    padding = batch["attention_mask"] == 0  # (B, L): no query attends to a padded key
    assert all((w.transpose(1, 3)[padding] == 0).all() for w in weights)
