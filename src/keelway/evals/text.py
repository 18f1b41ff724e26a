"""Sentence splitting and word tokens for the evaluators that compare texts.

:func:`sentences` splits an answer or a context passage into the statements
the RAG metrics check one by one, and :func:`content_tokens` gives the words
that carry meaning, for token-overlap tests. Both work on any Unicode text;
the abbreviation and stopword lists are English.
"""

from __future__ import annotations

import re

# A sentence ends at a run of ., !, ? or an ellipsis, with any closing quotes
# or brackets, followed by whitespace. A CJK full stop ends one by itself.
_BOUNDARY = re.compile(
    r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)"
    r"|[\u3002\uff01\uff1f]+[\"'\u201d\u2019\u00bb)\]\u300d\u300f]*"
)
# Words that end in a period without ending the sentence.
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "cf",
        "vs",
        "viz",
        "approx",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "mt",
        "fig",
        "figs",
        "eq",
        "vol",
        "pp",
        "dept",
        "sgt",
        "capt",
        "lt",
    ]
)
# Abbreviations that often end a sentence too. They end one when the next
# word starts with a capital letter.
_ENDING_ABBREVIATIONS = frozenset(
    ["etc", "inc", "ltd", "co", "corp", "jr", "sr", "no", "nos"]
)
# Single letters joined by periods, as in "U.S." or "U.K.".
_INITIALISM = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_LIST_MARKER = re.compile(r"^(?:[-*\u2022\u2023\u25e6\u2043]|\d{1,3}[.)])\s+")
_WORD = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:['\u2019][^\W_]+)*")
# Scripts written without spaces between words: each character is a token.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, without empty ones.

    A sentence ends at ``.``, ``!``, ``?`` or an ellipsis followed by
    whitespace, at a CJK full stop, and at every line break. Periods inside
    words and numbers ("3.11", "example.com") never end one, nor do those
    of abbreviations ("e.g.", "Dr.", "U.S." before a lowercase word) and
    initials ("J. Smith"). List markers at the start of a line ("- ",
    "2. ") are dropped, and so are pieces with no letter or digit.
    """
    found = []
    for line in text.splitlines():
        line = _LIST_MARKER.sub("", line.strip())
        start = 0
        for match in _BOUNDARY.finditer(line):
            if match.group().startswith(".") and not _ends_sentence(line, match):
                continue
            found.append(line[start : match.end()])
            start = match.end()
        found.append(line[start:])
    return [piece.strip() for piece in found if _has_word(piece)]


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    """Return whether the period run at ``match`` ends a sentence."""
    if match.group().startswith(".."):
        return True
    before = line[: match.start()].split()
    if not before:
        return False
    word = before[-1].lstrip("(\"'\u201c\u2018\u00ab[").casefold()
    after = line[match.end() :].lstrip()
    capital_follows = bool(after) and after[0].isupper()
    if word in _ABBREVIATIONS:
        return False
    if word in _ENDING_ABBREVIATIONS or _INITIALISM.fullmatch(word):
        return capital_follows
    # A single capital letter is an initial, as in "J. Smith".
    return not (len(word) == 1 and before[-1][-1].isupper())


def _has_word(piece: str) -> bool:
    return any(char.isalnum() for char in piece)


def words(text: str) -> list[str]:
    """Return the casefolded word tokens of ``text``, in order.

    Numbers keep their decimal point ("3.11"), contractions stay one word
    ("don't"), and text in scripts written without spaces (Chinese,
    Japanese) gives one token per character.
    """
    tokens = []
    for token in _WORD.findall(text.casefold()):
        if _UNSPACED.search(token):
            tokens.extend(_split_unspaced(token))
        else:
            tokens.append(token)
    return tokens


def _split_unspaced(token: str) -> list[str]:
    """Split a token that mixes unspaced script with other letters or digits."""
    pieces: list[str] = []
    run = ""
    for char in token:
        if _UNSPACED.match(char):
            if run:
                pieces.append(run)
                run = ""
            pieces.append(char)
        else:
            run += char
    if run:
        pieces.append(run)
    return pieces


def content_tokens(text: str) -> list[str]:
    """Return the casefolded word tokens of ``text`` that are not stopwords."""
    return [token for token in words(text) if token not in STOPWORDS]


def token_overlap(statement: str, reference: str) -> float | None:
    """Return the share of ``statement``'s content tokens found in ``reference``.

    Each distinct token counts once. Returns None when the statement has no
    content tokens, so that there is nothing to compare.
    """
    own = set(content_tokens(statement))
    if not own:
        return None
    return len(own & set(content_tokens(reference))) / len(own)
