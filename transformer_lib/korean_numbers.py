"""Chapter 8's task: reading numbers aloud in Korean (숫자 읽기), digits in, Hangul out.

The Sino-Korean reading of an integer 0 ≤ n < 10¹⁶, under these rules:

* digits 영 일 이 삼 사 오 육 칠 팔 구; inside a group of four digits the places are
  천 (1000), 백 (100), 십 (10) and the units; a zero digit is not read;
* 일 is dropped before 십, 백 and 천 (10 → 십, 1100 → 천백, 2010 → 이천십);
* the groups of four digits, from the right, take 만 (10⁴), 억 (10⁸) and 조 (10¹²);
  a group that is all zeros is not read at all (100000000 → 일억, 1000010000 → 십억 일만);
* a group that is exactly one keeps its 일 before 억 and 조 (일억, 일조) and before 만
  when a larger group precedes it (100010000 → 일억 일만), but drops it when 만 comes first
  (10000 → 만, 12345 → 만 이천삼백사십오);
* a space follows each read group of 만, 억 or 조: 한글 맞춤법 제44항, "수를 적을 경우에는
  '만(萬)' 단위로 띄어 쓴다" (numbers are spaced by units of 만), whose example is
  십이억 삼천사백오십육만 칠천팔백구십팔;
* 0 alone is 영.

The rules of 일 before 만 vary in practice (일만 for 10000 is also heard, and 억 만 for
100010000); the ones above are this module's, tested case by case in
``tests/test_korean_numbers.py``.

The seq2seq data is character level: the source is the decimal digits of ``n`` and the
target its reading, one token per character (syllable or space), see :data:`SOURCE_VOCAB`
and :data:`TARGET_VOCAB`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = [
    "BOS",
    "EOS",
    "KOREAN_NUMBER_LIMIT",
    "PAD",
    "SOURCE_VOCAB",
    "TARGET_VOCAB",
    "CharVocab",
    "encode_number_pairs",
    "korean_number",
    "korean_number_pairs",
    "split_numbers",
]

#: The readings cover 0 ≤ n < KOREAN_NUMBER_LIMIT = 10¹⁶ (up to 9999조 ...).
KOREAN_NUMBER_LIMIT = 10**16

DIGITS = "영일이삼사오육칠팔구"  # 0..9
SMALL_UNITS = ("", "십", "백", "천")  # places inside a group of four digits
LARGE_UNITS = ("", "만", "억", "조")  # 10⁰, 10⁴, 10⁸, 10¹²: one per group of four digits

PAD, BOS, EOS = 0, 1, 2  #: special token ids, shared by both vocabularies


def _read_group(group: int) -> str:
    """0 < group < 10000 -> its reading without a large unit: 2030 -> 이천삼십, 1111 -> 천백십일."""
    out = []
    for place in (3, 2, 1, 0):
        digit = group // 10**place % 10
        if digit == 0:
            continue
        spoken = "" if digit == 1 and place > 0 else DIGITS[digit]  # 일 dropped before 십/백/천
        out.append(spoken + SMALL_UNITS[place])
    return "".join(out)


def korean_number(n: int) -> str:
    """The Sino-Korean reading of ``n``, spaced by units of 만 (한글 맞춤법 제44항).

    Examples: ``0`` → ``"영"``, ``10`` → ``"십"``, ``10000`` → ``"만"``,
    ``12345`` → ``"만 이천삼백사십오"``, ``20300`` → ``"이만 삼백"``,
    ``100000000`` → ``"일억"``, ``1234567898`` → ``"십이억 삼천사백오십육만 칠천팔백구십팔"``.

    Args:
        n: an ``int`` with 0 ≤ n < 10¹⁶ (a ``bool`` is not accepted).

    Raises:
        ValueError: ``n`` is not an integer, or is outside [0, 10¹⁶).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"korean_number: n must be an int, got {type(n).__name__} {n!r}")
    if not 0 <= n < KOREAN_NUMBER_LIMIT:
        raise ValueError(f"korean_number: n must be in [0, 10**16), got {n}")
    if n == 0:
        return DIGITS[0]
    groups = [n // 10 ** (4 * g) % 10**4 for g in range(4)]  # groups[g] is counted in 10^(4g)
    words = []
    for g in (3, 2, 1, 0):
        if groups[g] == 0:
            continue  # an all-zero group is not read
        if groups[g] == 1 and g == 1 and not words:
            words.append(LARGE_UNITS[1])  # 만 first: 10000 -> 만, 12345 -> 만 이천삼백사십오
        else:
            words.append(_read_group(groups[g]) + LARGE_UNITS[g])  # 일억, 일조, 일억 일만
    return " ".join(words)


@dataclass(frozen=True)
class CharVocab:
    """A character vocabulary with the special ids :data:`PAD`, :data:`BOS`, :data:`EOS`.

    Character ``chars[i]`` has id ``i + 3``.
    """

    chars: str  # the characters, in id order

    @property
    def size(self) -> int:
        """Number of ids, the three specials included."""
        return len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        """``text`` -> one id per character (no BOS/EOS)."""
        try:
            return [self.chars.index(c) + 3 for c in text]
        except ValueError:
            unknown = sorted(set(text) - set(self.chars))
            raise ValueError(f"characters {unknown} are not in the vocabulary") from None

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """ids -> text, stopping at the first EOS and skipping PAD and BOS."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.chars[i - 3])
        return "".join(out)


SOURCE_VOCAB = CharVocab("0123456789")  #: the digits
TARGET_VOCAB = CharVocab(
    " " + DIGITS + "".join(SMALL_UNITS + LARGE_UNITS)
)  #: space and 17 syllables


def korean_number_pairs(numbers: list[int]) -> list[tuple[str, str]]:
    """(digits, reading) pairs: ``[12345]`` → ``[("12345", "만 이천삼백사십오")]``."""
    return [(str(n), korean_number(n)) for n in numbers]


def split_numbers(
    n_train: int, n_val: int, n_test: int, *, max_digits: int = 8, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """Disjoint train / validation / test sets of numbers, the same count per digit length.

    For each length 1..``max_digits`` the sets get ``n_train``, ``n_val`` and ``n_test``
    distinct numbers of that many digits; the split is by number, so no test number is
    ever seen in training. Lengths with fewer numbers than requested (1 and 2 digits)
    are shared out in proportion, but 0 always goes to training: 영 is read nowhere else.

    Returns:
        ``(train, val, test)``, lists of ints, each in increasing digit length.
    """
    if min(n_train, n_val, n_test) < 0 or n_train < 1:
        raise ValueError(f"counts must be >= 0 and n_train >= 1, got {n_train}, {n_val}, {n_test}")
    if not 1 <= max_digits <= 16:
        raise ValueError(f"max_digits must be in 1..16, got {max_digits}")
    rng = random.Random(seed)
    want = n_train + n_val + n_test
    train, val, test = [], [], []
    for length in range(1, max_digits + 1):
        low, high = (1 if length == 1 else 10 ** (length - 1)), 10**length  # 0 is added below
        if high - low > want:
            numbers = rng.sample(range(low, high), want)
            n_tr, n_va = n_train, n_val
        else:
            numbers = list(range(low, high))
            rng.shuffle(numbers)
            n_va = round(len(numbers) * n_val / want)
            n_te = round(len(numbers) * n_test / want)
            n_tr = len(numbers) - n_va - n_te
        if length == 1:
            train.append(0)
        train += numbers[:n_tr]
        val += numbers[n_tr : n_tr + n_va]
        test += numbers[n_tr + n_va :]
    return train, val, test


def encode_number_pairs(numbers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids for a list of numbers, right-padded with :data:`PAD`.

    Returns:
        ``(src, tgt)``: ``src`` (N, S) the digits; ``tgt`` (N, T) ``BOS reading EOS``.
        Teacher forcing feeds ``tgt[:, :-1]`` and predicts ``tgt[:, 1:]``.
    """
    sources = [SOURCE_VOCAB.encode(digits) for digits, _ in korean_number_pairs(numbers)]
    targets = [[BOS, *TARGET_VOCAB.encode(korean_number(n)), EOS] for n in numbers]
    return _pad(sources), _pad(targets)


def _pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out
