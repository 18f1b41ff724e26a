"""The lexical guard that a semantic cache hit must pass on top of cosine similarity.

Sentence embeddings place a question and its negation, or the same question
about another entity, close together: all-MiniLM-L6-v2 gives "Can I get a
refund?" and "Can I not get a refund?" a cosine of 0.95, and "refund policy for
orders in the EU" and "... in the US" 0.87. Cosine alone therefore cannot tell
a paraphrase from a different question. The guard compares the two texts word
by word and rejects the pair when any of these differ, checked in this order:

1. the number of negation words (``not``, ``no``, ``never``, ``n't`` ...);
2. the numbers (``2023``, ``22.04``, ``1,000``);
3. the quoted strings;
4. entity-like words: acronyms, words with a capital letter inside, and
   capitalized words that do not start a sentence;
5. the question words whose answers differ (who, when, where, why ...);
6. the content words: every word outside a small stop list, after lowercasing
   and stripping plural and ``-ing``/``-ed`` endings.

So a hit is a text with the same content words in any order, give or take stop
words, scaffolding ("tell me", "is it possible to") and contractions. A reworded
question that uses a synonym ("price" for "cost") misses, because a miss only
costs a model call while a wrong hit returns a wrong answer. Texts made only
of stop words must match word for word.

NOTE: word order is not compared, so "Does the dog bite the man?" passes
against "Does the man bite the dog?" (MiniLM cosine 0.985). Neither is a
change carried only by stop words, such as "my account" and "your account".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "nor",
        "neither",
        "none",
        "nobody",
        "nothing",
        "nowhere",
        "without",
    }
)

# Question words asking for different things: "when is X" and "where is X" are
# different questions, while "how", "what" and "which" are reworded freely.
DISTINCT_QUESTION_WORDS = frozenset({"who", "whom", "whose", "when", "where", "why"})

# Words that carry no content of their own in a chat request. Prepositions of
# direction ("from", "before", "after", "over", "under") are left out on purpose.
STOP_WORDS = frozenset(
    {
        # articles, determiners and pronouns
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "i",
        "me",
        "we",
        "us",
        "you",
        "he",
        "she",
        "it",
        "they",
        "them",
        "him",
        "myself",
        "yourself",
        "there",
        "here",
        # auxiliaries and modals
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "get",
        # question words (the distinct ones are compared separately)
        "what",
        "which",
        "how",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        # prepositions and conjunctions that rarely change the question
        "of",
        "to",
        "in",
        "on",
        "for",
        "at",
        "by",
        "with",
        "about",
        "as",
        "and",
        "or",
        "but",
        "if",
        "so",
        "then",
        "than",
        "also",
        "just",
        "really",
        # request scaffolding and politeness
        "please",
        "kindly",
        "thanks",
        "thank",
        "hi",
        "hello",
        "hey",
        "tell",
        "explain",
        "show",
        "describe",
        "give",
        "help",
        "know",
        "want",
        "need",
        "like",
        "let",
        "way",
        "step",
        "possible",
        "able",
        "ok",
        "okay",
    }
)

# "can't" -> "ca" + "n't" and "won't" -> "wo" + "n't" after splitting off "n't".
_NT_BASES = {"ca": "can", "wo": "will", "sha": "shall", "ai": "is"}
# Negated contractions typed without the apostrophe.
_BARE_NEGATIONS = frozenset(
    {
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "cant",
        "cannot",
        "wont",
        "couldnt",
        "shouldnt",
        "wouldnt",
        "hasnt",
        "havent",
        "hadnt",
        "mustnt",
        "neednt",
        "aint",
    }
)
_CONTRACTION_SUFFIXES = {"'re": "are", "'ve": "have", "'ll": "will", "'d": "would"}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,:/-]\d+)*")
_QUOTED = re.compile(
    r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d|(?<!\w)'([^']+)'(?!\w)|`([^`]+)`"
)
# Matches the words of _WORD before lowercasing, so entities compare with them.
_ORIGINAL_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")
_SENTENCE_BREAK = re.compile(r"[.!?:;\n]")
_PURE_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's decision on a candidate pair, for the trace.

    ``check`` names the check that decided, without quoting either text:
    ``negation``, ``numbers``, ``quoted``, ``entities``, ``question_words``,
    ``content``, ``stop_words`` or ``passed``. ``reason`` quotes the words that
    differ, so it is request content.
    """

    passed: bool
    check: str
    reason: str


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """The parts of a text that the guard compares.

    ``content`` maps each content word's stem to the word as first written, so
    that reasons quote words rather than stems.
    """

    words: tuple[str, ...]
    negations: int
    numbers: tuple[str, ...]
    quoted: frozenset[str]
    entities: frozenset[str]
    question_words: frozenset[str]
    content: Mapping[str, str]


def stem(word: str) -> str:
    """Strip plural and ``-ing``/``-ed`` endings so that word forms compare equal."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    else:
        return word.removesuffix("e") if len(word) > 4 else word
    # "resetting" -> "resett" -> "reset"; "enabled" -> "enabl", as "enable" is.
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]
    return word


def _split_words(text: str) -> list[str]:
    """Lowercase and split ``text`` into words, expanding contractions."""
    words: list[str] = []
    for token in _WORD.findall(text.lower().translate(_APOSTROPHES)):
        if token.endswith("n't"):
            base = token[:-3]
            words += [_NT_BASES.get(base, base), "not"]
        elif token in _BARE_NEGATIONS:
            base = token.removesuffix("not").removesuffix("nt")
            words += [_NT_BASES.get(base, base), "not"]
        elif "'" in token:
            base, _, suffix = token.partition("'")
            words.append(base)
            # "'s" is either "is" or a possessive, so it is dropped either way.
            expanded = _CONTRACTION_SUFFIXES.get("'" + suffix)
            if expanded:
                words.append(expanded)
        else:
            words.append(token)
    return words


def _entities(text: str) -> frozenset[str]:
    """Return the lowercased entity-like words of ``text``."""
    found: set[str] = set()
    previous_end = 0
    for match in _ORIGINAL_WORD.finditer(text):
        gap = text[previous_end : match.start()]
        starts_sentence = previous_end == 0 or bool(_SENTENCE_BREAK.search(gap))
        previous_end = match.end()
        word = match.group().replace("\u2019", "'").split("'")[0]
        if word == "I" or word.islower() or not any(c.isalpha() for c in word):
            continue
        acronym = len(word) > 1 and word.isupper()
        inner_capital = any(c.isupper() for c in word[1:])
        if acronym or inner_capital or not starts_sentence:
            found.add(word.lower())
    return frozenset(found)


def _numbers(text: str) -> tuple[str, ...]:
    # "1,000" and "1000" are one number; other separators ("22.04") are kept.
    return tuple(
        sorted(
            re.sub(r"(?<=\d),(?=\d{3}\b)", "", number)
            for number in _NUMBER.findall(text)
        )
    )


def _quoted(text: str) -> frozenset[str]:
    text = text.translate(_APOSTROPHES).replace("\u201c", '"').replace("\u201d", '"')
    return frozenset(
        " ".join("".join(groups).lower().split()) for groups in _QUOTED.findall(text)
    )


def features(text: str) -> TextFeatures:
    """Extract what the guard compares from ``text``."""
    words = _split_words(text)
    return TextFeatures(
        words=tuple(words),
        negations=sum(1 for word in words if word in NEGATIONS),
        numbers=_numbers(text),
        quoted=_quoted(text),
        entities=_entities(text),
        question_words=frozenset(w for w in words if w in DISTINCT_QUESTION_WORDS),
        content=_content(words),
    )


def _content(words: Iterable[str]) -> dict[str, str]:
    content: dict[str, str] = {}
    for word in words:
        if word in STOP_WORDS or word in NEGATIONS or _PURE_NUMBER.match(word):
            continue
        content.setdefault(stem(word), word)
    return content


def _only(request: Iterable[str], cached: Iterable[str]) -> str:
    """Describe what only one side has, counting repeats, as a guard reason."""
    request_count, cached_count = Counter(request), Counter(cached)
    request_only = sorted((request_count - cached_count).elements())
    cached_only = sorted((cached_count - request_count).elements())
    parts = []
    if request_only:
        parts.append(f"{request_only} only in the request")
    if cached_only:
        parts.append(f"{cached_only} only in the cached text")
    return " and ".join(parts)


def compare(request: str, cached: str) -> GuardVerdict:
    """Decide whether the response cached for ``cached`` may serve ``request``."""
    return compare_features(features(request), features(cached))


def compare_features(request: TextFeatures, cached: TextFeatures) -> GuardVerdict:
    """Decide as :func:`compare` does, from already extracted features."""
    if request.negations != cached.negations:
        return GuardVerdict(
            False,
            "negation",
            f"negation differs: {request.negations} negation word(s) in the"
            f" request, {cached.negations} in the cached text",
        )

    if request.numbers != cached.numbers:
        return GuardVerdict(
            False,
            "numbers",
            f"numbers differ: {_only(request.numbers, cached.numbers)}",
        )

    if request.quoted != cached.quoted:
        return GuardVerdict(
            False,
            "quoted",
            f"quoted text differs: {_only(request.quoted, cached.quoted)}",
        )

    request_words, cached_words = set(request.words), set(cached.words)
    missing = request.entities - cached.entities - cached_words
    extra = cached.entities - request.entities - request_words
    if missing or extra:
        return GuardVerdict(
            False, "entities", f"entities differ: {_only(missing, extra)}"
        )

    if request.question_words != cached.question_words:
        return GuardVerdict(
            False,
            "question_words",
            "question words differ: "
            + _only(request.question_words, cached.question_words),
        )

    if request.content.keys() != cached.content.keys():
        only_request = [
            w for s, w in request.content.items() if s not in cached.content
        ]
        only_cached = [w for s, w in cached.content.items() if s not in request.content]
        return GuardVerdict(
            False,
            "content",
            f"content words differ: {_only(only_request, only_cached)}",
        )

    if not request.content and request.words != cached.words:
        return GuardVerdict(
            False,
            "stop_words",
            "no content words to compare and the words are not the same",
        )
    return GuardVerdict(
        True, "passed", "same negation, numbers, entities and content words"
    )
