"""Lesson 12: a CLIP tokenizer for the caption grammar, built by the course instead of downloaded.

Stable Diffusion reads a prompt through CLIP's tokenizer: byte-pair encoding (BPE) splits each
word into pieces from a learned vocabulary, and the ids of those pieces, framed by a start and an
end token and padded to a fixed length, are what the text encoder sees. A real CLIP vocabulary
has 49,408 pieces learned from web text; the captions of lesson 12 use 25 words, so the course
writes its own ``vocab.json`` and ``merges.txt`` in the same format, with one piece per word:

* ``vocab.json``: piece -> id. CLIP marks the end of a word with ``</w>``, so "red" is the piece
  ``red</w>``; the two special tokens ``<|startoftext|>`` and ``<|endoftext|>`` come first.
* ``merges.txt``: the BPE merge rules in priority order, learned from the words by
  :func:`learn_merges` (BPE's training: join the most frequent pair, repeat) until each word is
  one piece; every piece a rule starts from (the letters) is in the vocabulary too.

The result is an ordinary ``transformers.CLIPTokenizer``: ``save_pretrained`` and a pipeline's
``from_pretrained`` treat it like the real one. A word outside the grammar falls apart into
letters, or into the unknown token ``<|endoftext|>`` where a letter is missing, silently: the
text encoder never saw such pieces in a caption. :func:`check_prompt` turns that into a clear
error before a prompt reaches a pipeline.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from transformers import CLIPTokenizer

from ..data.captions import CAPTION_WORDS

__all__ = ["MAX_TOKENS", "learn_merges", "build_tokenizer", "check_prompt"]

#: Tokens per prompt, start and end tokens included: the longest caption has 8 words.
MAX_TOKENS = 12
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")


def _join(pieces: list[str], pair: tuple[str, str]) -> list[str]:
    """``pieces`` with every adjacent occurrence of ``pair`` joined into one piece."""
    out: list[str] = []
    for piece in pieces:
        if out and (out[-1], piece) == pair:
            out[-1] += piece
        else:
            out.append(piece)
    return out


def learn_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Byte-pair encoding's training, on ``words``: spell each word in letters (the last one
    marked ``</w>``), then repeatedly join the most frequent adjacent pair everywhere and record
    it as a rule, until every word is one piece.

    Encoding a word applies the same rules in the same order, so it retraces these joins and
    every training word comes out whole. (Joining each word's letters left to right would not:
    "green" would lose the pair ``r e`` to the rule that builds "red".) Ties go to the
    alphabetically first pair, so the same words always give the same rules.
    """
    spelt = [[*word[:-1], word[-1] + "</w>"] for word in words]
    rules: list[tuple[str, str]] = []
    while any(len(pieces) > 1 for pieces in spelt):
        counts = Counter(pair for pieces in spelt for pair in zip(pieces, pieces[1:]))
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        rules.append(best)
        spelt = [_join(pieces, best) for pieces in spelt]
    return rules


def build_tokenizer(
    words: Sequence[str] = CAPTION_WORDS,
    folder: str | Path | None = None,
    max_length: int = MAX_TOKENS,
) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` whose vocabulary is ``words`` (one piece each) and the two specials.

    The files are written to ``folder`` (by default to a temporary folder, removed once the
    tokenizer has read them: it keeps its vocabulary in memory, and ``save_pretrained`` writes it
    again); the same words give the same files and ids. ``max_length`` is the padded length of
    every prompt.
    """
    words = [w.lower() for w in words]
    bad = [w for w in words if not w or not w.isalnum()]
    if bad or len(set(words)) != len(words):
        raise ValueError(f"words must be distinct, non-empty and alphanumeric, got {bad or words}")
    rules = learn_merges(words)
    # every piece a rule joins or makes is in the vocabulary too (BPE needs the letters it starts
    # from); the whole words come first, so a word's id does not depend on how it is spelt
    pieces = [*_SPECIAL, *(w + "</w>" for w in words), *(p for rule in rules for p in rule)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(pieces))}
    with tempfile.TemporaryDirectory(prefix="course-tokenizer-") as scratch:
        folder = Path(folder or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
        merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in rules)
        (folder / "merges.txt").write_text(merges)
        tokenizer = CLIPTokenizer(
            str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
        )
    # BPE applies rules by priority across all words; check each word still ends as one piece
    split = [w for w in words if tokenizer.tokenize(w) != [w + "</w>"]]
    if split:
        raise ValueError(f"these words do not tokenize to one piece: {split}")
    return tokenizer


def check_prompt(
    tokenizer: CLIPTokenizer, prompt: str, words: Sequence[str] = CAPTION_WORDS
) -> list[int]:
    """The ids of ``prompt`` (start and end tokens included, unpadded), or an error naming the
    problem: not a string, a word outside ``words`` (the grammar the model was trained on), or
    too many words for the text encoder's positions.

    The empty prompt is allowed: it is the unconditional prompt of classifier-free guidance.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt is a str, got {type(prompt).__name__}")
    unknown = [w for w in prompt.lower().split() if w not in words]
    if unknown:
        raise ValueError(
            f"{prompt!r}: unknown word(s) {unknown}; this model knows only: {' '.join(words)}"
        )
    ids = tokenizer(prompt).input_ids
    if len(ids) > tokenizer.model_max_length:
        raise ValueError(
            f"{prompt!r} is {len(ids) - 2} words; at most {tokenizer.model_max_length - 2} fit "
            f"(the text encoder has {tokenizer.model_max_length} positions)"
        )
    return ids
