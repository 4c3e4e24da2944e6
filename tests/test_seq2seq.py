"""The encoder–decoder Transformer of Chapter 8: masks, greedy decoding, the cache, errors."""

import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.korean_numbers import BOS, EOS, SOURCE_VOCAB, TARGET_VOCAB, encode_number_pairs
from transformer_lib.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, exact_match, train_seq2seq

PAD = 0


def model(**options):
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        SOURCE_VOCAB.size, TARGET_VOCAB.size, d_model=32, n_heads=4, d_ff=64, max_len=24, **options
    )
    return Seq2SeqTransformer(config).eval()


def sources():
    """Padded sources of different lengths: 8, 1, 5 and 3 digits."""
    src, _ = encode_number_pairs([12345678, 7, 20300, 105])
    return src


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(positional="alibi"), "unknown positional 'alibi'"),
        (dict(activation="swish"), "unknown activation 'swish'"),
        (dict(pad_id=20), "pad_id=20 is not a token id of both vocabularies"),
        (dict(d_model=30), "d_model=30 is not divisible by n_heads=4"),
        (dict(n_decoder_layers=0), "n_decoder_layers must be at least 1"),
        (dict(dropout=1.0), "dropout must be in [0, 1)"),
    ],
)
def test_config_is_validated(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Seq2SeqConfig(10, 20, **options)


def test_forward_shapes_and_padding_masks():
    m = model(dropout=0.0)
    src, tgt = encode_number_pairs([12345678, 7, 20300, 105])
    logits = m(src, tgt[:, :-1])
    assert logits.shape == (4, tgt.shape[1] - 1, TARGET_VOCAB.size)
    with torch.no_grad():
        # more padding on either side changes nothing at the real target positions
        longer = m(F.pad(src, (0, 3), value=PAD), F.pad(tgt[:, :-1], (0, 2), value=PAD))
    real = tgt[:, :-1] != PAD
    torch.testing.assert_close(longer[:, : logits.shape[1]][real], logits[real], atol=1e-5, rtol=0)


def test_tied_embeddings_share_one_tensor():
    m = model(tie_embeddings=True)
    assert m.lm_head.weight is m.tgt_embedding.embedding.weight
    untied = model()
    assert untied.lm_head.weight is not untied.tgt_embedding.embedding.weight


@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "rotary", "none"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_cached_generation_equals_uncached(positional, norm_first):
    m = model(positional=positional, norm_first=norm_first)
    src = sources()
    kwargs = dict(max_new_tokens=20, bos_id=BOS, eos_id=EOS, return_logits=True)
    cached, cached_logits = m.generate(src, use_cache=True, **kwargs)
    plain, plain_logits = m.generate(src, use_cache=False, **kwargs)
    assert torch.equal(cached, plain)
    torch.testing.assert_close(cached_logits, plain_logits, atol=1e-5, rtol=0)
    assert cached.shape[0] == 4 and cached.shape[1] <= 20


def test_each_sequence_stops_at_its_own_eos_and_is_padded_after():
    m = model()
    src = sources()
    free = m.generate(src, max_new_tokens=12, bos_id=BOS, eos_id=-1)  # -1 never comes
    assert free.shape == (4, 12)
    stop = free[0, 2].item()  # a token sequence 0 produces at step 2: call it EOS
    firsts = [(row == stop).nonzero()[0, 0].item() if (row == stop).any() else None for row in free]
    got = m.generate(src, max_new_tokens=12, bos_id=BOS, eos_id=stop)
    assert got.shape[1] == (12 if None in firsts else max(firsts) + 1)
    for row, first, full in zip(got, firsts, free, strict=True):
        end = len(row) if first is None else first + 1
        assert torch.equal(row[:end], full[:end])  # the same tokens up to its EOS
        assert (row[end:] == PAD).all()  # then padding
    assert firsts[0] is not None and firsts[0] <= 2


def test_generation_leaves_the_training_mode_as_it_was():
    m = model().train()
    m.generate(sources(), max_new_tokens=3, bos_id=BOS, eos_id=EOS)
    assert m.training


def test_positions_beyond_max_len_are_clear_errors():
    m = model()
    with pytest.raises(ValueError, match=re.escape("max_new_tokens must be in 1..max_len=24")):
        m.generate(sources(), max_new_tokens=25, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match=re.escape("source positions 0..24 go beyond max_len=24")):
        m.encode(torch.ones(1, 25, dtype=torch.long))
    memory, memory_mask = m.encode(sources())
    from transformer_lib.decoder import KVCache

    cache = KVCache(2)
    m.decode(torch.ones(4, 24, dtype=torch.long), memory, memory_mask, cache=cache)
    with pytest.raises(ValueError, match=re.escape("target positions 24..24 go beyond max_len=24")):
        m.decode(torch.ones(4, 1, dtype=torch.long), memory, memory_mask, cache=cache)


def test_training_learns_and_leaves_the_global_random_state_alone():
    m = model(dropout=0.1)
    src, tgt = encode_number_pairs(list(range(0, 1000, 3)))
    state = torch.random.get_rng_state()
    history = train_seq2seq(m, src, tgt, steps=40, batch_size=32, lr=3e-3, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert history.loss[-1] < 0.6 * history.loss[0]
    assert not m.training


def test_exact_match_grades_whole_sequences():
    src, tgt = encode_number_pairs([12, 345, 6])
    answers = tgt[:, 1:].clone()
    answers[1, 1] = TARGET_VOCAB.encode("일")[0]  # one wrong syllable in the second
    fake = SimpleNamespace(
        config=SimpleNamespace(pad_id=PAD),
        generate=lambda src, max_new_tokens, **_: answers[: len(src), :max_new_tokens],
    )
    assert exact_match(fake, src, tgt, bos_id=BOS, eos_id=EOS).tolist() == [True, False, True]
