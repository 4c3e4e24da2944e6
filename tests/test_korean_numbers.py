"""The Korean number reading (숫자 읽기) of Chapter 8 and its seq2seq data."""

import re

import pytest
import torch

from transformer_lib.data import korean_number, korean_number_pairs, split_numbers
from transformer_lib.korean_numbers import (
    BOS,
    EOS,
    PAD,
    SOURCE_VOCAB,
    TARGET_VOCAB,
    encode_number_pairs,
)

# The rules of transformer_lib/korean_numbers.py, case by case.
TABLE = [
    (0, "영"),
    (1, "일"),
    (7, "칠"),
    (10, "십"),  # 일 dropped before 십
    (11, "십일"),
    (20, "이십"),
    (100, "백"),  # ... before 백
    (101, "백일"),  # a zero inside a group is not read
    (110, "백십"),
    (1000, "천"),  # ... before 천
    (1001, "천일"),
    (1010, "천십"),
    (2010, "이천십"),
    (9999, "구천구백구십구"),
    (10000, "만"),  # 만 first: 일 dropped
    (10001, "만 일"),  # a space after each group of 만
    (11000, "만 천"),
    (12345, "만 이천삼백사십오"),
    (20300, "이만 삼백"),
    (100000, "십만"),
    (1000000, "백만"),
    (10000000, "천만"),
    (10100000, "천십만"),
    (100000000, "일억"),  # 일 kept before 억
    (100000001, "일억 일"),  # the all-zero 만 group vanishes, with its space
    (100010000, "일억 일만"),  # 일 kept before 만 when a larger group precedes
    (110000000, "일억 천만"),
    (1000010000, "십억 일만"),
    (1234567898, "십이억 삼천사백오십육만 칠천팔백구십팔"),  # 한글 맞춤법 제44항's example
    (10**12, "일조"),  # 일 kept before 조
    (10**12 + 10**8, "일조 일억"),
    (3 * 10**12 + 40000, "삼조 사만"),
    (10**16 - 1, "구천구백구십구조 구천구백구십구억 구천구백구십구만 구천구백구십구"),
]


@pytest.mark.parametrize(("n", "reading"), TABLE, ids=[str(n) for n, _ in TABLE])
def test_reading_table(n, reading):
    assert korean_number(n) == reading


@pytest.mark.parametrize("bad", [-1, 10**16, 10**20])
def test_out_of_range_is_an_error(bad):
    with pytest.raises(ValueError, match=re.escape("[0, 10**16)")):
        korean_number(bad)


@pytest.mark.parametrize("bad", [1.0, "12", True, None])
def test_non_integers_are_an_error(bad):
    with pytest.raises(ValueError, match="must be an int"):
        korean_number(bad)


def test_one_space_between_read_groups():
    samples = list(range(1, 20001, 7)) + [10**k for k in range(16)] + [10**k + 1 for k in range(16)]
    for n in samples:
        reading = korean_number(n)
        read_groups = sum(n // 10 ** (4 * g) % 10**4 > 0 for g in range(4))
        assert reading == reading.strip() and "  " not in reading, n
        assert reading.count(" ") == read_groups - 1, (n, reading)


def test_a_space_follows_each_read_large_unit():
    # every space comes right after 만, 억 or 조, and every non-final 만/억/조 is followed by one
    for n in range(0, 10**9, 987_653):
        reading = korean_number(n)
        for i, char in enumerate(reading):
            if char == " ":
                assert reading[i - 1] in "만억조", reading
            elif char in "만억조" and i + 1 < len(reading):
                assert reading[i + 1] == " ", reading


def test_pairs_and_vocabularies_round_trip():
    assert korean_number_pairs([12345, 0]) == [("12345", "만 이천삼백사십오"), ("0", "영")]
    src, tgt = encode_number_pairs([20300, 5])
    assert src.shape == (2, 5) and tgt.shape == (2, 7)  # BOS 이 만 space 삼 백 EOS
    assert tgt[:, 0].tolist() == [BOS, BOS]
    assert SOURCE_VOCAB.decode(src[1]) == "5" and src[1, 1:].eq(PAD).all()
    assert TARGET_VOCAB.decode(tgt[0]) == "이만 삼백"
    assert TARGET_VOCAB.decode(tgt[1]) == "오" and tgt[1, 2].item() == EOS
    with pytest.raises(ValueError, match="not in the vocabulary"):
        TARGET_VOCAB.encode("one")


def test_splits_are_disjoint_by_number_and_stratified_by_length():
    train, val, test = split_numbers(50, 10, 20, max_digits=6, seed=3)
    assert not set(train) & set(test) and not set(train) & set(val) and not set(val) & set(test)
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert 0 in train  # 영 is read nowhere else
    test_lengths = torch.bincount(torch.tensor([len(str(n)) for n in test]))
    assert test_lengths[3:].tolist() == [20] * 4  # 3..6 digits: the requested count
    assert test_lengths[1] >= 1 and test_lengths[2] >= 1  # shared out in proportion
    assert split_numbers(50, 10, 20, max_digits=6, seed=3) == (train, val, test)  # seeded
