"""The pQRNN / PRADO ternary projection: text -> a (max_len, features) matrix
of -1, 0, +1 without trainable parameters (PRADO: Kaliamoorthi, Ravi and
Kozareva, EMNLP 2019; pQRNN: Kaliamoorthi et al. 2021).

The reference, exactly (an app reproduces it in a few lines in any language
with a SHA-3 library):

1. tokens = text.lower().split() (Unicode whitespace), then the end-of-sequence
   token "</s>" is appended; at most ``max_len`` tokens are kept (the text is
   truncated, the EOS token always kept as the last one);
2. for every token, d = SHAKE-128(UTF-8 bytes of the token), read
   ``features / 4`` bytes;
3. feature j comes from the 2 bits of d at bit positions 2j and 2j + 1 (bits of
   a byte read most significant first): 00 -> 0, 01 -> +1, 10 -> -1, 11 -> 0;
   so each feature is 0 with p = 1/2 and +-1 with p = 1/4 each;
4. rows after the last token are 0 (padding).

SHAKE-128 stands where the reference uses a 64-bit murmur-style hash: it is
in every standard library (Python hashlib, Java BouncyCastle, iOS CryptoKit via
SHA-3 packages) and gives as many bits as the feature size needs from one call.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

import numpy as np

EOS = "</s>"
_MAP = np.array([0, 1, -1, 0], dtype=np.int8)  # 2-bit code -> ternary value


def tokenize(text: str) -> list[str]:
    return text.lower().split()


@lru_cache(maxsize=200_000)
def token_features(token: str, features: int) -> bytes:
    """The ternary features of one token, as int8 bytes (cached)."""
    digest = hashlib.shake_128(token.encode("utf-8")).digest(features // 4)
    bits = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))  # most significant bit first
    codes = bits[0::2] * 2 + bits[1::2]
    return _MAP[codes].tobytes()


def check_features(features: int) -> None:
    from odml.errors import SpecError

    if features < 4 or features % 4 or features > 4096:
        raise SpecError(f"projection features must be a multiple of 4 in [4, 4096], got {features}")


def project(text: str, max_len: int, features: int) -> tuple[np.ndarray, bool]:
    """(the (max_len, features) int8 projection of ``text``, whether it was truncated)."""
    toks = tokenize(text)
    truncated = len(toks) + 1 > max_len
    toks = toks[: max_len - 1] + [EOS]
    out = np.zeros((max_len, features), dtype=np.int8)
    for i, t in enumerate(toks):
        out[i] = np.frombuffer(token_features(t, features), dtype=np.int8)
    return out, truncated


def project_batch(texts: list[str], max_len: int, features: int) -> tuple[np.ndarray, int]:
    """(the (N, max_len, features) int8 projections, how many texts were truncated)."""
    check_features(features)
    out = np.zeros((len(texts), max_len, features), dtype=np.int8)
    n_trunc = 0
    for i, t in enumerate(texts):
        out[i], tr = project(t, max_len, features)
        n_trunc += tr
    return out, n_trunc


def distort(text: str, rng: random.Random, p: float = 0.25) -> str:
    """Training augmentation: each token, with probability ``p``, loses a
    character, has one moved, or gets one inserted."""
    toks = text.split()
    out = []
    for t in toks:
        if len(t) > 1 and rng.random() < p:
            op, i = rng.randrange(3), rng.randrange(len(t))
            if op == 0:
                t = t[:i] + t[i + 1:]
            elif op == 1:
                c, rest = t[i], t[:i] + t[i + 1:]
                j = rng.randrange(len(rest) + 1)
                t = rest[:j] + c + rest[j:]
            else:
                t = t[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + t[i:]
        out.append(t)
    return " ".join(out)
