"""The document schema and its validation: what is accepted, how it is normalized, and the typed
reason for every kind of rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import (
    SCHEMA_VERSION,
    Document,
    Limits,
    Reason,
    Rejection,
    content_hash,
    make_document,
    make_id,
    validate,
)
from pipeline.text import html_to_text, normalize_text, normalize_title

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def doc_json(**changes: object) -> bytes:
    base = make_document(
        source="https://valdria.example/feed",
        ref="valdria-1",
        title="Port reopens",
        text="The port of Valdria reopened after the storm.",
        url="https://valdria.example/1",
        published_at=datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
        fetched_at=NOW,
    ).to_dict()
    base.update(changes)
    return json.dumps(base, ensure_ascii=False).encode()


# --- text ------------------------------------------------------------------------------------


def test_html_to_text_keeps_visible_text_and_paragraphs() -> None:
    html = (
        "<div><p>First &amp; <b>bold</b> paragraph.</p><script>var x = '<p>';</script>"
        "<style>p {}</style><p>Second<br>line&nbsp;two</p><ul><li>one</li><li>two</li></ul></div>"
    )
    assert html_to_text(html) == "First & bold paragraph.\n\nSecond line two\n\none\n\ntwo"


def test_normalize_text_strips_html_remnants_but_keeps_angle_bracket_content() -> None:
    text = "Kumagai Gumi Co Ltd <KUMT.TOK> said a < b > c.<br/>Shares &lt;rose&gt; <i>3 pct</i>."
    assert normalize_text(text) == "Kumagai Gumi Co Ltd <KUMT.TOK> said a < b > c.\n\nShares <rose> 3 pct."


def test_normalize_text_reflows_reuters_lines_and_paragraph_markers() -> None:
    body = "Showers continued throughout\nthe week in the Bahia zone.\n&\\tThe dry period\nmeans delays.\n REUTER\n"
    assert normalize_text(body) == (
        "Showers continued throughout the week in the Bahia zone.\n\nThe dry period means delays. REUTER"
    )


def test_normalize_text_removes_control_characters_and_unifies_unicode() -> None:
    assert normalize_text("Cafe\u0301\x00\x07 \u00a0 au\tlait\r\n\r\n\r\nfin\u200b") == "Café au lait\n\nfin"
    assert normalize_title("  Breaking:\n\n <b>News</b>  ") == "Breaking: News"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="&<"), max_size=300))
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


# --- documents ---------------------------------------------------------------------------------


def test_id_is_stable_and_depends_on_source_and_reference() -> None:
    assert make_id("feed-a", "guid-1") == make_id("feed-a", "guid-1")
    assert len({make_id("feed-a", "guid-1"), make_id("feed-a", "guid-2"), make_id("feed-b", "guid-1")}) == 3
    assert len(make_id("x", "y")) == 32


def test_valid_document_round_trips_with_recomputed_hash() -> None:
    raw = doc_json(content_sha256="0" * 64, text="  The port\n\n\n<b>reopened</b>.  ", extra_field=1)
    doc = validate(raw, key=json.loads(raw)["id"].encode(), now=NOW)
    assert isinstance(doc, Document)
    assert doc.text == "The port\n\nreopened."
    assert doc.content_sha256 == content_hash("The port\n\nreopened.")
    assert doc.schema_version == SCHEMA_VERSION
    assert json.loads(doc.to_json()) == {
        "schema_version": 1,
        "id": doc.id,
        "source": "https://valdria.example/feed",
        "url": "https://valdria.example/1",
        "title": "Port reopens",
        "text": "The port\n\nreopened.",
        "published_at": "2026-11-25T08:30:00Z",
        "fetched_at": "2026-11-26T12:00:00Z",
        "content_sha256": doc.content_sha256,
    }


texts = st.text(min_size=1, max_size=200).filter(lambda t: normalize_text(t) != "")
dates = st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2026, 1, 1), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(
    text=texts,
    title=st.text(max_size=80),
    # sources obey the contract: no control characters (pipeline/contract.py)
    source=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
        str.strip
    ),
    ref=st.text(max_size=40),
    published=st.none() | dates,
)
def test_producer_documents_always_validate_to_themselves(
    text: str, title: str, source: str, ref: str, published: datetime | None
) -> None:
    doc = make_document(
        source=source, ref=ref, text=text, title=title, published_at=published, fetched_at=NOW
    )
    assert validate(doc.to_json(), key=doc.key, now=NOW) == doc


REJECTIONS: list[tuple[str, bytes | None, Reason]] = [
    ("empty message", b"", Reason.INVALID_JSON),
    ("tombstone", None, Reason.INVALID_JSON),
    ("invalid JSON", b'{"schema_version": 1, "id": ', Reason.INVALID_JSON),
    ("binary garbage", bytes(range(0, 256, 7)) * 3, Reason.NOT_UTF8),
    ("latin-1 payload", doc_json(text="Notícias").decode().encode("latin-1"), Reason.NOT_UTF8),
    ("JSON array", b"[1, 2, 3]", Reason.NOT_AN_OBJECT),
    ("JSON string", b'"just text"', Reason.NOT_AN_OBJECT),
    ("no version", json.dumps({"id": "x"}).encode(), Reason.UNSUPPORTED_VERSION),
    ("future version", doc_json(schema_version=2), Reason.UNSUPPORTED_VERSION),
    ("boolean version", doc_json(schema_version=True), Reason.UNSUPPORTED_VERSION),
    (
        "missing text",
        json.dumps({k: v for k, v in json.loads(doc_json()).items() if k != "text"}).encode(),
        Reason.MISSING_FIELD,
    ),
    ("text is a number", doc_json(text=42), Reason.WRONG_TYPE),
    ("title is a list", doc_json(title=["a"]), Reason.WRONG_TYPE),
    ("date is a number", doc_json(published_at=1764000000), Reason.WRONG_TYPE),
    ("empty id", doc_json(id=""), Reason.INVALID_FIELD),
    ("empty source", doc_json(source="  "), Reason.INVALID_FIELD),
    ("empty text", doc_json(text=""), Reason.EMPTY_TEXT),
    ("only markup", doc_json(text="<p> </p>\n\t<br/>"), Reason.EMPTY_TEXT),
    ("5 MB text", doc_json(text="word " * 1_000_000), Reason.TOO_LARGE),
    ("unparseable date", doc_json(published_at="yesterday"), Reason.BAD_DATE),
    ("naive date", doc_json(published_at="2026-11-25T08:30:00"), Reason.BAD_DATE),
    ("year 9999", doc_json(published_at="9999-12-31T00:00:00Z"), Reason.DATE_OUT_OF_RANGE),
    ("year 1066", doc_json(published_at="1066-10-14T09:00:00Z"), Reason.DATE_OUT_OF_RANGE),
    ("fetched tomorrow+", doc_json(fetched_at="2026-11-28T00:00:00Z"), Reason.DATE_OUT_OF_RANGE),
]


@pytest.mark.parametrize(("what", "raw", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_bad_input_is_rejected_with_its_reason(what: str, raw: bytes | None, reason: Reason) -> None:
    result = validate(raw, now=NOW)
    assert isinstance(result, Rejection), what
    assert result.reason is reason
    assert result.detail


def test_key_must_match_id_when_present() -> None:
    result = validate(doc_json(), key=b"another-id", now=NOW)
    assert isinstance(result, Rejection) and result.reason is Reason.KEY_MISMATCH
    assert isinstance(validate(doc_json(), key=None, now=NOW), Document)


def reason(raw: bytes, limits: Limits) -> Reason | None:
    result = validate(raw, now=NOW, limits=limits)
    return result.reason if isinstance(result, Rejection) else None


def test_limits_are_configurable() -> None:
    assert reason(doc_json(text="x" * 400), Limits(max_message_bytes=300)) is Reason.TOO_LARGE
    assert reason(doc_json(text="eleven char"), Limits(max_text_bytes=10)) is Reason.TOO_LARGE
    assert reason(doc_json(title="t" * 11), Limits(max_title_chars=10)) is Reason.TOO_LARGE
    late = doc_json(published_at="2026-11-26T12:00:01Z")
    assert reason(late, Limits()) is None
    assert reason(late, Limits(max_clock_skew=timedelta(0))) is Reason.DATE_OUT_OF_RANGE
