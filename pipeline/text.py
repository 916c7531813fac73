"""Text clean-up shared by the producers and the faust stage (standard library only).

``html_to_text`` turns feed HTML into plain text; ``normalize_text`` is the canonical form a
document's ``text`` is stored and hashed in (the stage applies it to whatever arrives, so HTML
remnants and odd whitespace from any producer end up the same way). ``normalize_title`` is the
one-line variant for titles.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Elements whose content is never text a reader sees.
_SKIP = frozenset({"script", "style", "head", "template", "noscript", "svg", "math", "iframe", "object"})
# Elements that end a paragraph.
_BLOCK = _names(
    """p div section article header footer aside nav main blockquote pre ul ol li dl dt dd table tr
    h1 h2 h3 h4 h5 h6 figure figcaption hr address form fieldset details summary"""
)
# Tag names we treat as HTML when they show up inside plain text. Anything else in angle brackets
# (Reuters writes tickers as <KUMT.TOK>) is content and stays.
_KNOWN_TAGS = (
    _SKIP
    | _BLOCK
    | _names(
        """a abbr b big br center cite code em font i img q s small span strike strong sub sup tbody td
        th thead tt u html body wbr time mark ins del picture source video audio"""
    )
)
_TAG_NAMES = "|".join(sorted(_KNOWN_TAGS, key=len, reverse=True))
_SKIP_NAMES = "|".join(sorted(_SKIP))
_SKIP_ELEMENT_RE = re.compile(rf"<({_SKIP_NAMES})\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_BLOCK_TAG_RE = re.compile(
    rf"</?(?:{'|'.join(sorted(_BLOCK, key=len, reverse=True))}|br)\b(?:\s[^<>]*)?/?>", re.IGNORECASE
)
_TAG_RE = re.compile(rf"</?(?:{_TAG_NAMES})\b(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY_RE = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# Reuters-21578 marks paragraphs with a literal "&\t" (an SGML remnant) at the start of a line.
_REUTERS_PARA_RE = re.compile(r"(?m)^&\\t")
# Control characters other than newline and tab (which whitespace handling takes care of).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_SPACES_RE = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_PARAGRAPH_RE = re.compile(r"\n\s*\n")


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment, one paragraph per block element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip_depth += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment, normalized (see :func:`normalize_text`)."""
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    return normalize_text("".join(parser.parts))


def strip_html_remnants(text: str) -> str:
    """Remove HTML tags of known elements, comments and script/style blocks; decode entities.

    Only real HTML element names count as tags, so ``<KUMT.TOK>`` or ``a < b > c`` survive.
    """
    if "<" in text:
        text = _COMMENT_RE.sub(" ", text)
        text = _SKIP_ELEMENT_RE.sub(" ", text)
        text = _BLOCK_TAG_RE.sub("\n\n", text)
        text = _TAG_RE.sub("", text)
    if "&" in text and _ENTITY_RE.search(text):
        text = html.unescape(text)
    return text


def _clean_chars(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _CONTROL_RE.sub("", text)


def normalize_text(text: str) -> str:
    """The canonical form of a document body.

    HTML remnants removed, Unicode NFC, no control characters, runs of spaces collapsed, lines
    of a paragraph joined with one space, paragraphs separated by exactly one blank line.
    """
    text = _REUTERS_PARA_RE.sub("\n", text)
    text = _clean_chars(strip_html_remnants(text))
    paragraphs = []
    for block in _PARAGRAPH_RE.split(text):
        lines = (_SPACES_RE.sub(" ", line).strip() for line in block.split("\n"))
        paragraph = " ".join(line for line in lines if line)
        if paragraph:
            paragraphs.append(paragraph)
    return "\n\n".join(paragraphs)


def normalize_title(title: str) -> str:
    """A title on one line: like :func:`normalize_text`, with every break turned into a space."""
    return " ".join(normalize_text(title).split())
