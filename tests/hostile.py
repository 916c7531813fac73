"""Hostile raw events for the document contract: hypothesis strategies and a fixed, derandomized
sample of them for the end-to-end runs.

Every limit of :mod:`pipeline.contract` at and past its edge, NUL and control characters, lone
surrogates, RTL and combining text, 4-byte emoji, every date edge, duplicate ids with other
content, non-UTF-8, truncated JSON, huge numbers and nested objects.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline import contract
from pipeline.events import make_document

NOW = datetime.now(UTC).replace(microsecond=0)
EMOJI = "\U0001f600\U0001f30d\U0001f9ec"  # 4 bytes each in UTF-8
RTL = "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202e\u202b"
COMBINING = "e\u0301\u0308a\u0327\u0336 Z\u0351\u0352\u0353"
SPICE = ["", "\x00", "\x07", "\x1f", "\x7f", "\ud800", "\udfff", EMOJI, RTL, COMBINING, "\t", "\n", "\\"]
PLAIN = "market shares rose after the central bank held rates while oil prices fell"


def _sized(n: int, unit: str) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def fields_at_edges() -> st.SearchStrategy[dict[str, Any]]:
    """Field overrides around every limit."""
    lim = contract
    return st.one_of(
        st.builds(
            lambda n, u: {"id": _sized(n, u)},
            st.sampled_from([1, lim.MAX_ID_CHARS, lim.MAX_ID_CHARS + 1]),
            st.sampled_from(["i", EMOJI, "\u05e9"]),
        ),
        st.builds(
            lambda n, u: {"source": _sized(n, u)},
            st.sampled_from([1, 199, lim.MAX_SOURCE_CHARS, lim.MAX_SOURCE_CHARS + 1, 300, 2048]),
            st.sampled_from(["s", EMOJI, RTL, COMBINING]),
        ),
        st.builds(
            lambda n: {"url": "https://e.example/" + _sized(n, "u")},
            st.sampled_from([10, lim.MAX_URL_CHARS - 18, lim.MAX_URL_CHARS - 17]),
        ),
        st.builds(
            lambda n: {"title": _sized(n, "t")},
            st.sampled_from([0, lim.MAX_TITLE_CHARS, lim.MAX_TITLE_CHARS + 1]),
        ),
        st.builds(
            lambda n: {"text": _sized(n, "ab ")}, st.sampled_from([0, 1, 1999, 2000, 2001])
        ),  # e2e sets 2000
        st.builds(lambda d: {"published_at": d}, st.sampled_from(DATE_EDGES)),
        st.builds(lambda d: {"fetched_at": d}, st.sampled_from(DATE_EDGES)),
    )


DATE_EDGES: list[Any] = [
    None,
    "1900-01-01T00:00:00Z",
    "1899-12-31T23:59:59Z",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-14:00",  # after 9999 in UTC
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00",  # no time zone
    "2026-01-01",
    "yesterday",
    "",
    12345,
    (NOW + timedelta(hours=23)).isoformat(),
    (NOW + timedelta(days=2)).isoformat(),
    (NOW - timedelta(days=365 * 100)).isoformat(),
    "2024-02-29T23:59:59.999999+05:45",
]


def spiced_fields() -> st.SearchStrategy[dict[str, Any]]:
    """A field with a hostile character somewhere in it."""
    return st.builds(
        lambda name, spice, where: {name: PLAIN[:where] + spice + PLAIN[where:]},
        st.sampled_from(["id", "source", "url", "title", "text"]),
        st.sampled_from(SPICE),
        st.integers(0, 20),
    )


def odd_types() -> st.SearchStrategy[dict[str, Any]]:
    nested: Any = "x"
    for _ in range(50):
        nested = {"a": [nested]}
    values = st.sampled_from([None, 1, 1.5, True, [], {}, ["a"], {"nested": nested}, 10**30, -(10**30)])
    names = st.sampled_from([*contract_fields(), "schema_version"])
    return st.builds(lambda n, v: {n: v}, names, values)


def contract_fields() -> list[str]:
    return ["id", "source", "url", "title", "text", "published_at", "fetched_at", "content_sha256"]


def base_document(i: int) -> dict[str, Any]:
    doc = make_document(
        source="hostile-wire",
        ref=f"h-{i}",
        text=f"{PLAIN} item {i} " + " ".join(PLAIN.split()[i % 7 :]),
        title=f"item {i}",
        url=f"https://e.example/{i}",
        published_at=NOW - timedelta(days=1),
        fetched_at=NOW - timedelta(minutes=1),
    )
    return doc.to_dict()


@st.composite
def raw_events(draw: st.DrawFn) -> tuple[bytes | None, bytes]:
    """(key, value) of one hostile raw message."""
    i = draw(st.integers(0, 10_000))
    doc = base_document(i)
    kind = draw(st.sampled_from(["edge", "edge", "spice", "spice", "type", "bytes", "dup-id", "valid"]))
    if kind == "edge":
        doc.update(draw(fields_at_edges()))
    elif kind == "spice":
        doc.update(draw(spiced_fields()))
    elif kind == "type":
        doc.update(draw(odd_types()))
    elif kind == "dup-id":  # an id seen elsewhere, with other content
        doc["id"] = f"shared-id-{draw(st.integers(0, 3))}"
    elif kind == "bytes":
        raw = json.dumps(doc, ensure_ascii=False).encode()
        return None, draw(
            st.sampled_from(
                [
                    raw[: draw(st.integers(1, len(raw) - 1))],  # truncated JSON
                    raw.replace(b"item", b"\xff\xfeitem", 1),  # not UTF-8
                    raw.replace(b'"schema_version": 1', b'"schema_version": ' + b"9" * 5000),  # huge integer
                    raw.replace(b'"schema_version": 1', b'"schema_version": 1e999'),
                    b"[" * 5_000 + b"]" * 5_000,  # deep nesting
                    b'"just a string"',
                    b"\x00" * 64,
                    b"",
                ]
            )
        )
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), allow_nan=True)
    keyed = draw(st.booleans())
    key = doc["id"].encode("utf-8", "surrogatepass") if keyed and isinstance(doc.get("id"), str) else None
    return key, text.encode("utf-8", "surrogatepass")


def sample(n: int) -> list[tuple[bytes | None, bytes]]:
    """``n`` hostile events, the same ones on every run (derandomized hypothesis)."""
    out: list[tuple[bytes | None, bytes]] = []

    @settings(
        derandomize=True,
        max_examples=n,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(raw_events())
    def collect(event: tuple[bytes | None, bytes]) -> None:
        out.append(event)

    collect()
    return out[:n]
