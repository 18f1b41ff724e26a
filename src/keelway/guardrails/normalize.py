"""Text normalization that undoes common obfuscation before injection detection.

:func:`normalize` is a pure function. It returns the text an attacker meant
the model to read, together with notes naming each trick it undid. The
result is only ever matched and embedded, never shown or forwarded, so it
may lose formatting freely.

The steps run in this order, because each one exposes text for the next:

1. HTML entities are decoded, comment markers are removed and the text of
   hidden elements, ``title``/``alt``/``aria-label`` attributes and markdown
   link titles is kept in place, so what a renderer hides is still read.
2. Zero-width and bidi control characters are removed, and Unicode tag
   characters (U+E0020-U+E007E, invisible copies of ASCII) are turned back
   into ASCII.
3. NFKC folds full-width, mathematical and other compatibility forms.
4. Cyrillic and Greek look-alikes become Latin letters in words that are
   written in Latin script (see :func:`_fold_homoglyphs`).
5. Base64, hex, URL-encoded and ROT13 segments are decoded where the result
   reads as language.
6. Letter-by-letter spacing ("i g n o r e") is collapsed and leetspeak
   digits inside words are read as letters.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

# Zero-width spaces and joiners, word joiner, invisible operators, the BOM,
# soft hyphen, Mongolian vowel separator and the bidi embedding, override and
# isolate controls. None of them changes what a model reads once removed.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_TAG_CHARACTERS = re.compile("[\U000e0000-\U000e007f]")

# Cyrillic and Greek letters that render like a Latin letter in common fonts.
# A compact table, rather than Unicode's full confusables list, because only
# letters an attacker can swap into an English word matter here, and a full
# list also maps Latin letters to other Latin letters.
_HOMOGLYPHS = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԍ": "g", "ӏ": "l",
    "ԛ": "q", "ԝ": "w", "ь": "b", "п": "n", "г": "r",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "Һ": "H", "І": "I", "Ї": "I",
    "Ј": "J", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Ԁ": "D", "Ԍ": "G", "Ӏ": "I",
    "Ԛ": "Q", "Ԝ": "W",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "η": "n",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)
_WORD = re.compile(r"\w+")
_NON_ASCII_WORD = re.compile(r"\w*[^\x00-\x7f]\w*")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_NON_ASCII_LETTER = re.compile(r"[^\x00-\x7f]")

_HTML_COMMENT = re.compile(r"<!--(.*?)(?:-->|$)", re.DOTALL)
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])"
    r"|opacity\s*:\s*0(?![.\d]*[1-9])|color\s*:\s*(?:#fff(?:fff)?\b|white\b)"
    r"|\bhidden\b|aria-hidden",
    re.IGNORECASE,
)
_HTML_TAG = re.compile(r"<[a-zA-Z][^<>]*>")
_ATTRIBUTE_TEXT = re.compile(
    r"""\b(?:title|alt|aria-label|data-[\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""",
    re.IGNORECASE,
)
_MARKDOWN_TITLE = re.compile(r"""\]\(\s*\S+\s+(?:"([^"]*)"|'([^']*)')\s*\)""")
_MARKDOWN_COMMENT = re.compile(r"^\s*\[[^\]]*\]:\s*#\s*\((.*)\)\s*$", re.MULTILINE)

_BASE64 = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{16,}={0,2}(?![\w+/=-])")
_HEX = re.compile(
    r"(?<![\w:])(?:[0-9a-fA-F]{16,}|(?:[0-9a-fA-F]{2}[ :]){7,}[0-9a-fA-F]{2})(?![\w:])"
)
_HEX_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}){4,}")
_URL_ENCODED = re.compile(r"(?:%[0-9a-fA-F]{2}[^\s%]{0,3}){3,}")
# The separator must repeat, so "i.g.n.o.r.e a.l.l" stays two words.
_SPACED_LETTERS = re.compile(r"(?<!\S)\w([ .\-_*|])(?:\w\1)+\w(?!\S)")
_LEET_WORD = re.compile(r"[\w@$]*(?:[A-Za-z][013457@$]|[013457@$][A-Za-z])[\w@$]*")
_LEET_TABLE = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)

# Common English words, to tell decoded language from decoded noise and
# ROT13 text from plain text. Words an injection uses are included on
# purpose, because those are what the decoders must recover.
_ENGLISH_WORDS = """a about above after all also an and any are as ask at be been
before but by can do does for forget from give have how i if ignore in
instructions is it its just know like me more must my new no not now of on
only or other our out over please previous print prompt reveal rules say
secret should show so system tell than that the their them then there these
they this to up us use was we what when which who will with you your yours
disregard override password admin developer mode assistant instead follow
following message messages earlier prior everything told said reply answer
output write send data user key keys act pretend role unrestricted"""
_ENGLISH = frozenset(_ENGLISH_WORDS.split())
_MAX_DECODE_DEPTH = 2


@dataclass(frozen=True, slots=True)
class Normalized:
    """The text to detect on and the tricks that were undone to get it."""

    text: str
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether any step changed the text."""
        return bool(self.notes)


def normalize(text: str) -> Normalized:
    """Return ``text`` with obfuscation undone, and notes naming what was undone.

    Notes are drawn from ``html_entities``, ``html_hidden``, ``markdown_hidden``,
    ``zero_width``, ``unicode_tags``, ``nfkc``, ``homoglyph``, ``base64``,
    ``hex``, ``url_encoding``, ``rot13``, ``spacing`` and ``leetspeak``, in
    the order the steps found them.
    """
    notes: list[str] = []
    text = _expose_markup(text, notes)
    text = _remove_invisible(text, notes)
    folded = unicodedata.normalize("NFKC", text)
    if folded != text:
        notes.append("nfkc")
        text = folded
    text = _fold_homoglyphs(text, notes)
    text = _decode_segments(text, notes, depth=0)
    text = _collapse_spacing(text, notes)
    text = _read_leetspeak(text, notes)
    return Normalized(text, notes)


def _note(notes: list[str], name: str) -> None:
    if name not in notes:
        notes.append(name)


def _expose_markup(text: str, notes: list[str]) -> str:
    if "&" in text:
        unescaped = html.unescape(text)
        if unescaped != text:
            _note(notes, "html_entities")
            text = unescaped
    if "<" in text:
        if "<!--" in text:
            text = _HTML_COMMENT.sub(lambda match: f" {match.group(1)} ", text)
            _note(notes, "html_hidden")
        if any(_HIDDEN_STYLE.search(tag.group()) for tag in _HTML_TAG.finditer(text)):
            _note(notes, "html_hidden")
        # Attribute values stay where they are, but quotes and equals signs
        # around them are blanked so their words read as plain text.
        text = _ATTRIBUTE_TEXT.sub(lambda match: _attribute_words(match, notes), text)
    if "](" in text:
        titled = _MARKDOWN_TITLE.sub(lambda match: _markdown_title(match, notes), text)
        text = titled
    if "]:" in text:
        text = _MARKDOWN_COMMENT.sub(
            lambda match: _markdown_comment(match, notes), text
        )
    return text


def _attribute_words(match: re.Match[str], notes: list[str]) -> str:
    value = match.group(1) if match.group(1) is not None else match.group(2)
    if len(value.split()) >= 3:
        _note(notes, "html_hidden")
    return f" {value} "


def _markdown_title(match: re.Match[str], notes: list[str]) -> str:
    value = match.group(1) if match.group(1) is not None else match.group(2)
    _note(notes, "markdown_hidden")
    return f"] {value} "


def _markdown_comment(match: re.Match[str], notes: list[str]) -> str:
    _note(notes, "markdown_hidden")
    return f" {match.group(1)} "


def _remove_invisible(text: str, notes: list[str]) -> str:
    if text.isascii():
        return text
    if _TAG_CHARACTERS.search(text):
        text = _TAG_CHARACTERS.sub(_tag_to_ascii, text)
        _note(notes, "unicode_tags")
    stripped = _INVISIBLE.sub("", text)
    if stripped != text:
        _note(notes, "zero_width")
    return stripped


def _tag_to_ascii(match: re.Match[str]) -> str:
    code = ord(match.group()) - 0xE0000
    return chr(code) if 0x20 <= code < 0x7F else ""


def _fold_homoglyphs(text: str, notes: list[str]) -> str:
    """Replace look-alike letters in words that belong to Latin-script text.

    A word is folded when it mixes Latin letters with look-alikes, or when
    it consists only of look-alikes in text that is mostly Latin. Russian or
    Greek text is left alone, so rules written for those languages still
    match it.
    """
    if text.isascii():
        return text
    words = _WORD.findall(text)
    latin_words = sum(1 for word in words if word.isascii() and word.isalpha())
    mostly_latin = latin_words * 2 >= len(words)
    changed = False

    def fold(match: re.Match[str]) -> str:
        nonlocal changed
        word = match.group()
        if word.isascii():
            return word
        folded = word.translate(_HOMOGLYPH_TABLE)
        if folded == word:
            return word
        mixed = _LATIN_LETTER.search(word) is not None
        if mixed or (mostly_latin and not _NON_ASCII_LETTER.search(folded)):
            changed = True
            return folded
        return word

    result = _NON_ASCII_WORD.sub(fold, text)
    if changed:
        _note(notes, "homoglyph")
    return result


_LOWER_WORD = re.compile(r"[a-z]+")


def _english_ratio(text: str) -> float:
    words = _LOWER_WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(1 for word in words if word in _ENGLISH) / len(words)


def _reads_as_language(text: str) -> bool:
    """Whether decoded bytes look like prose rather than binary or noise."""
    if len(text) < 6:
        return False
    printable = sum(1 for char in text if char.isprintable() or char in "\n\t")
    if printable < 0.95 * len(text):
        return False
    letters = sum(1 for char in text if char.isalpha())
    if letters < 0.6 * len(text.replace(" ", "")):
        return False
    # Prose in any language has spaces or, for CJK, non-ASCII letters.
    return " " in text.strip() or not text.isascii()


def _decode_bytes(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if _reads_as_language(decoded) else None


def _decode_base64(segment: str) -> str | None:
    if segment.isalpha() and (segment.islower() or segment.isupper()):
        return None
    data = segment.rstrip("=")
    padded = data + "=" * (-len(data) % 4)
    try:
        if "-" in data or "_" in data:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _decode_bytes(raw)


def _decode_hex(segment: str) -> str | None:
    digits = re.sub(r"[ :]", "", segment)
    if len(digits) % 2:
        return None
    try:
        return _decode_bytes(bytes.fromhex(digits))
    except ValueError:
        return None


def _decode_segments(text: str, notes: list[str], depth: int) -> str:
    """Replace encoded segments with their decoded text, up to two levels deep."""
    if depth >= _MAX_DECODE_DEPTH:
        return text
    found: list[str] = []

    def replace(decoder: object, name: str) -> object:
        def substitute(match: re.Match[str]) -> str:
            decoded = decoder(match.group())  # type: ignore[operator]
            if decoded is None:
                return match.group()
            found.append(name)
            return f" {decoded} "

        return substitute

    if text.count("%") >= 3:
        text = _URL_ENCODED.sub(replace(_decode_url, "url_encoding"), text)
    if "\\x" in text:
        text = _HEX_ESCAPES.sub(
            replace(lambda s: _decode_hex(s.replace("\\x", "")), "hex"), text
        )
    text = _HEX.sub(replace(_decode_hex, "hex"), text)
    text = _BASE64.sub(replace(_decode_base64, "base64"), text)
    rot13 = _decode_rot13_lines(text)
    if rot13 is not None:
        text = rot13
        found.append("rot13")
    for name in found:
        _note(notes, name)
    if found:
        # A decoded segment may itself be encoded (base64 of ROT13 text).
        text = _decode_segments(text, notes, depth + 1)
    return text


def _decode_url(segment: str) -> str | None:
    decoded = unquote(segment)
    if decoded == segment:
        return None
    return decoded if _reads_as_language(decoded) or " " in decoded else None


def _decode_rot13_lines(text: str) -> str | None:
    """Append the ROT13 reading of each line that reads better as ROT13.

    A line qualifies when at least two of its words become common English
    words of three letters or more, and its ROT13 reading has clearly more
    common words than the line itself.
    """
    rotated_text = codecs.encode(text, "rot13")
    if len(_long_english_words(rotated_text)) < 2:
        return None
    lines = text.split("\n")
    rotated_lines = rotated_text.split("\n")
    changed = False
    for index, (line, rotated) in enumerate(zip(lines, rotated_lines, strict=True)):
        if len(_long_english_words(rotated)) < 2:
            continue
        if _english_ratio(rotated) > max(0.25, 2 * _english_ratio(line)):
            lines[index] = f"{line} {rotated}"
            changed = True
    return "\n".join(lines) if changed else None


def _long_english_words(text: str) -> list[str]:
    return [
        word
        for word in _LOWER_WORD.findall(text.lower())
        if len(word) > 2 and word in _ENGLISH
    ]


def _collapse_spacing(text: str, notes: list[str]) -> str:
    """Join runs of single letters separated by one space or punctuation mark."""
    changed = False

    def join(match: re.Match[str]) -> str:
        nonlocal changed
        changed = True
        return re.sub(r"[ .\-_*|]", "", match.group())

    result = _SPACED_LETTERS.sub(join, text)
    if changed:
        _note(notes, "spacing")
    return result


def _read_leetspeak(text: str, notes: list[str]) -> str:
    """Read digits inside words as letters when that yields an English word."""
    readings: dict[str, str] = {}
    for token in set(text.split()):
        word = token.strip(".,;:!?\"'()[]{}<>")
        if len(word) < 2 or word in readings or not _LEET_WORD.fullmatch(word):
            continue
        letters = word.translate(_LEET_TABLE)
        if letters.lower() in _ENGLISH or _LEET_HINT.search(letters.lower()):
            readings[word] = letters
    if not readings:
        return text
    _note(notes, "leetspeak")
    alternatives = "|".join(
        re.escape(word) for word in sorted(readings, key=len, reverse=True)
    )
    pattern = re.compile(rf"(?<![\w@$])(?:{alternatives})(?![\w@$])")
    return pattern.sub(lambda match: readings[match.group()], text)


# Stems that make a leetspeak reading worth keeping even when the whole word
# is not in the small English list.
_LEET_HINT = re.compile(
    r"ignor|instruct|previous|prompt|system|disregard|jailbreak|restrict|bypass"
    r"|reveal|secret|password|override|forget|pretend|filter|unlock|rules"
)
