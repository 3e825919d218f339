"""CLIP's byte-level BPE tokenizer.

Gives the same ids as OpenAI's reference tokenizer (checked on a corpus in the tests).
The merges file ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI's (MIT), vendored as data.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import ftfy
import regex
import torch

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
# 49152 entries in the vocabulary = 256 bytes + 256 end-of-word bytes + merges + 2 specials.
_N_MERGES = 49152 - 256 - 2
_TOKEN_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


def _byte_to_unicode() -> dict[int, str]:
    """A reversible map from bytes to printable unicode characters, so BPE never sees
    whitespace or control characters (GPT-2's scheme)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _clean(text: str) -> str:
    text = ftfy.fix_text(text)
    # Twice, as the reference does: web captions are often escaped twice.
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class Tokenizer:
    """Byte-level BPE tokenizer of CLIP.

    Args:
        context_length: length of the id rows that :meth:`__call__` returns.
    """

    def __init__(self, context_length: int = 77) -> None:
        self.context_length = context_length
        self.byte_encoder = _byte_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        path = resources.files("mpiqa.backbones").joinpath("bpe_simple_vocab_16e6.txt.gz")
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
        byte_symbols = list(self.byte_encoder.values())
        vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
        vocab += ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.sot_id = self.encoder[SOT]
        self.eot_id = self.encoder[EOT]
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, word: str) -> list[str]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = zip(symbols, symbols[1:], strict=False)
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):
                if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self._cache[word] = symbols
        return symbols

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without start/end tokens."""
        ids: list[int] = []
        for word in _TOKEN_PATTERN.findall(_clean(text)):
            mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> torch.Tensor:
        """Tokenise into a (N, context_length) int64 tensor: start token, text, end token,
        zero padding. Text too long for the context is cut and still ends with the
        end-of-text token (as OpenAI's ``tokenize(..., truncate=True)``)."""
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id][:length]
            ids[-1] = self.eot_id
            out[row, : len(ids)] = torch.tensor(ids)
        return out


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = 77) -> torch.Tensor:
    """Tokenise text for CLIP's text tower: a (N, context_length) int64 tensor of ids."""
    return default_tokenizer()(texts, context_length=context_length)
