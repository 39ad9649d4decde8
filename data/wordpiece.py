"""WordPiece tokenization for MobileBERT, through Hugging Face `tokenizers`
(BERT normalizer: lower case, accents stripped; BERT pre-tokenizer; greedy
longest-match WordPiece with "##" continuations).

A vocabulary is either the user's (a BERT-style vocab.txt, one token per line,
"[PAD]" first so that padding is id 0) or trained on the user's texts. A
sequence is [CLS] tokens [SEP], cut to the fixed length (and counted when
cut), then padded with [PAD] = 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odml.errors import DataError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_vocab(texts: list[str], vocab_size: int) -> list[str]:
    """A WordPiece vocabulary of at most ``vocab_size`` tokens learned from ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if vocab_size < len(SPECIALS) + 30:
        raise DataError(f"--vocab-size {vocab_size}: too small for a WordPiece vocabulary (at least 35)")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    vocab = tok.get_vocab()
    return [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]


def read_vocab(path: str | Path) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: vocabulary file not found")
    try:
        tokens = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: bytes that are not UTF-8 at byte {e.start + 1}") from None
    tokens = [t.strip() for t in tokens]
    if not tokens or tokens[0] != "[PAD]":
        raise DataError(f"{p}: line 1 must be [PAD] (padding is token id 0), got {tokens[0] if tokens else 'nothing'!r}")
    for s in ("[UNK]", "[CLS]", "[SEP]"):
        if s not in tokens:
            raise DataError(f"{p}: the vocabulary has no {s} token")
    seen: dict[str, int] = {}
    for i, t in enumerate(tokens, 1):
        if not t:
            raise DataError(f"{p}: line {i}: empty token")
        if t in seen:
            raise DataError(f"{p}: line {i}: token {t!r} repeats line {seen[t]}")
        seen[t] = i
    return tokens


class WordPiece:
    def __init__(self, vocab: list[str], seq_len: int):
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

        self.vocab, self.seq_len = vocab, seq_len
        ids = {t: i for i, t in enumerate(vocab)}
        tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
        self.tok = tok

    def encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """(token ids (n, seq_len) int32 padded with 0, how many texts were cut)."""
        out = np.zeros((len(texts), self.seq_len), dtype=np.int32)
        cut = 0
        sep = self.vocab.index("[SEP]")
        for i, enc in enumerate(self.tok.encode_batch(list(texts))):
            ids = enc.ids
            if len(ids) > self.seq_len:
                cut += 1
                ids = ids[: self.seq_len - 1] + [sep]
            out[i, : len(ids)] = ids
        return out, cut
