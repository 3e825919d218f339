"""The tokenizer gives OpenAI's ids on a corpus of varied strings."""

from __future__ import annotations

import random

import pytest
import torch

from mpiqa import tokenize
from mpiqa.backbones.tokenizer import Tokenizer
from tests.oracles import openai_tokenize, openai_tokenizer

_WORDS = (
    "a photo of the cat dog city night blurry sharp noisy jpeg compression over-exposed "
    "under-exposed quality excellent poor fair bad good perfect landscape portrait indoor "
    "it's don't we're they've I'm you'll he'd ISO f/2.8 1/250s 4K HDR RAW"
).split()
_UNICODE = [
    "café",
    "naïve",
    "Zürich",
    "façade",
    "smörgåsbord",
    "São Paulo",
    "Ελληνικά",
    "русский",
    "日本語の写真",
    "中文图片质量",
    "한국어",
    "עברית",
    "العربية",
    "हिन्दी",
    "ﬁne ligature",
    "ＦＵＬＬ ｗｉｄｔｈ １２３",
    "“curly” ‘quotes’",
    "em—dash – en",
    "…ellipsis",
    "½ ¾ ²",
    "😀",
    "🎉🎉",
    "👍🏽",
    "🏳️‍🌈",
    "👨‍👩‍👧",
    "❤️",
    "\u200bzero\u200bwidth",
    "e\u0301 combining",
    "Ã©tÃ© mojibake",
    "&amp; &lt;tag&gt; &quot;html&quot;",
    "&amp;amp; double",
    "tab\there",
    "new\nline",
    "  spaces   around  ",
    "\x00\x07control",
    "<|endoftext|>",
    "<|startoftext|> hi",
]
_PUNCT = list("!?.,;:'\"()[]{}<>@#$%^&*-_=+/\\|~`")


def _corpus(n: int = 1200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    corpus = list(_UNICODE) + ["", " ", "a", "A", "3.14159", "1,000,000", "2026-11-22"]
    while len(corpus) < n:
        kind = rng.random()
        pieces = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.55:
                word = rng.choice(_WORDS)
                pieces.append(word.upper() if rng.random() < 0.1 else word)
            elif r < 0.7:
                pieces.append(rng.choice(_UNICODE))
            elif r < 0.85:
                pieces.append("".join(rng.choice(_PUNCT) for _ in range(rng.randint(1, 4))))
            else:
                pieces.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
        text = (" " if kind < 0.8 else "").join(pieces)
        if kind > 0.97:  # very long: must be truncated to the context
            text = " ".join([text] * 40)
        if kind < 0.02:  # random code points, including rare planes
            text = "".join(chr(rng.randint(0x20, 0x2FFFF)) for _ in range(rng.randint(1, 30)))
            text = text.encode("utf-8", "ignore").decode("utf-8", "ignore")
        corpus.append(text)
    return corpus


CORPUS = _corpus()


def test_corpus_is_large_and_varied():
    assert len(CORPUS) >= 1000
    assert any(len(openai_tokenizer().encode(t)) > 75 for t in CORPUS), "no string needs truncating"


def test_ids_equal_openai_reference_on_corpus():
    ours = tokenize(CORPUS)
    reference = openai_tokenize(CORPUS)
    mismatched = [CORPUS[i] for i in range(len(CORPUS)) if not torch.equal(ours[i], reference[i])]
    assert not mismatched, f"{len(mismatched)} strings differ, e.g. {mismatched[:3]!r}"


def test_layout_of_a_row():
    tok = Tokenizer()
    row = tokenize("Good photo.")[0]
    n = len(tok.encode("Good photo."))
    assert row[0] == tok.sot_id == 49406
    assert row[n + 1] == tok.eot_id == 49407
    assert row[n + 2 :].eq(0).all()
    assert row.argmax() == n + 1  # the text tower pools at the end-of-text token


def test_long_text_is_cut_and_still_ends_with_eot():
    row = tokenize("very " * 200)[0]
    assert row.shape == (77,) and row[-1] == 49407 and row[0] == 49406


@pytest.mark.parametrize("text", ["a photo of a cat", "Zürich at night", "ISO 3200, f/2.8 😀"])
def test_decode_matches_reference(text):
    tok = Tokenizer()
    ids = tok.encode(text)
    assert tok.decode(ids) == openai_tokenizer().decode(ids)
    if not any(c.isdigit() for c in text):  # CLIP splits numbers into single digits
        assert tok.decode(ids).strip() == text.lower()


def test_context_length_and_batch_shape():
    assert tokenize(["a", "b", "c"], context_length=16).shape == (3, 16)
    assert tokenize("one string").shape == (1, 77)
