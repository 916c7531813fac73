"""The document contract holds the stage, the worker and the store together: limits equal to the
database columns, validate() total on any bytes, and every accepted document storable."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_store import writes
from memory_store.codec import CODE_FORMAT_VERSION, CodeLayout, pack_codes
from memory_store.errors import InvalidRecord
from memory_store.models import DocumentRow, Source
from memory_store.records import DocumentRecord
from memory_store.store import MemoryStore
from pipeline import contract
from pipeline.dead_letter import dead_letter_record
from pipeline.events import Document, Limits, Reason, Rejection, make_document, validate
from tests.hostile import NOW, raw_events

SMALL = Limits(max_text_bytes=2000)
NUM_CODES = 16
LAYOUTS = {1: CodeLayout(NUM_CODES)}  # the store's version -> (C, G) for writes._check


def record_of(doc: Document, k: int = 3) -> DocumentRecord:
    return DocumentRecord(
        id=doc.id,
        source=doc.source,
        published_at=doc.published_at or doc.fetched_at,
        content_sha256=doc.content_sha256,
        k=k,
        codebook_version=1,
        codes=pack_codes(np.arange(k) % NUM_CODES, NUM_CODES),
        code_format=CODE_FORMAT_VERSION,
        url=doc.url,
        title=doc.title or None,
    )


def test_fixed_limits_are_the_database_columns() -> None:
    assert DocumentRow.__table__.c.id.type.length == contract.MAX_ID_CHARS  # type: ignore[attr-defined]
    assert Source.__table__.c.name.type.length == contract.MAX_SOURCE_CHARS  # type: ignore[attr-defined]
    assert DocumentRow.__table__.c.content_sha256.type.length == contract.SHA256_HEX_CHARS  # type: ignore[attr-defined]
    # 4 bytes per character at most: the unique b-tree entry of a source stays far below ~2.7 kB
    assert contract.MAX_SOURCE_CHARS * 4 < 2700 and contract.MAX_ID_CHARS * 4 < 2700


def test_a_300_character_source_is_refused_by_the_stage_not_the_store() -> None:
    for n, accepted in (
        (contract.MAX_SOURCE_CHARS, True),
        (contract.MAX_SOURCE_CHARS + 1, False),
        (300, False),
    ):
        doc = make_document(source="s" * n, ref="r", text="some text", fetched_at=NOW)
        result = validate(doc.to_json(), key=doc.key, now=NOW)
        if accepted:
            assert isinstance(result, Document)
            writes._check(record_of(result), LAYOUTS)  # the store takes what the stage takes
        else:
            assert isinstance(result, Rejection) and result.reason is Reason.INVALID_FIELD
            assert "source" in result.detail


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300) | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_validate_never_raises_on_any_bytes(value: bytes) -> None:
    assert isinstance(validate(value, key=None, now=NOW), Document | Rejection)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(raw_events())
def test_every_accepted_hostile_document_is_storable(event: tuple[bytes | None, bytes]) -> None:
    key, value = event
    result = validate(value, key=key, now=NOW, limits=SMALL)
    if isinstance(result, Rejection):
        assert result.reason is not Reason.INTERNAL_ERROR, result.detail  # every case is a known one
        return
    writes._check(record_of(result), LAYOUTS)  # raises InvalidRecord if the contracts disagree
    assert validate(result.to_json(), key=result.key, now=NOW, limits=SMALL) == result  # stable


def test_accepted_hostile_documents_are_written_by_both_checks(tmp_path: Path) -> None:
    """Past the checks, the database itself takes them (SQLite here; PostgreSQL end to end)."""
    from tests.hostile import sample

    accepted = [
        r for k, v in sample(300) if isinstance(r := validate(v, key=k, now=NOW, limits=SMALL), Document)
    ]
    assert len(accepted) > 30
    store = MemoryStore(f"sqlite:///{tmp_path / 'm.db'}", auto_migrate=True)
    vectors = np.random.default_rng(0).normal(size=(NUM_CODES, 4)).astype(np.float32)
    version = store.add_codebook_version(vectors)
    assert version == 1
    result = store.write_batch([record_of(d) for d in accepted])
    assert set(result.inserted) | set(result.duplicates) == {d.id for d in accepted}
    store.close()


def test_the_store_refuses_what_breaks_the_contract_naming_the_document() -> None:
    doc = make_document(source="ok", ref="r", text="t", fetched_at=NOW)
    bad = record_of(doc)
    for field, value in (("source", "s" * 201), ("id", ""), ("url", "a\x00b"), ("title", "x\ud800")):
        rec = replace(bad, **{field: value})
        try:
            writes._check(rec, LAYOUTS)
        except InvalidRecord as e:
            assert e.doc_id == rec.id
        else:
            raise AssertionError(f"{field}={value!r} was accepted")


def test_dates_at_every_edge() -> None:
    base = json.loads(make_document(source="s", ref="r", text="t", fetched_at=NOW).to_json())
    cases = {
        "1900-01-01T00:00:00Z": True,
        "1899-12-31T23:59:59Z": False,
        "0001-01-01T00:00:00+14:00": False,
        "9999-12-31T23:59:59-14:00": False,
        (NOW + timedelta(hours=23)).isoformat(): True,
        (NOW + timedelta(days=2)).isoformat(): False,
        "2026-01-01T00:00:00": False,
    }
    for when, ok in cases.items():
        for name in ("published_at", "fetched_at"):
            result = validate(json.dumps({**base, name: when}).encode(), now=NOW)
            assert isinstance(result, Document) is ok, (name, when, result)
    far = datetime.max.replace(tzinfo=UTC) - timedelta(hours=1)
    assert isinstance(
        validate(json.dumps(base).encode(), now=far), Document
    )  # no overflow at the end of time


def test_one_dead_letter_format_for_stage_and_learner() -> None:
    letter = dead_letter_record(
        key=b"k",
        value=b"x" * 10,
        reason="invalid_field",
        detail="d" * 2000,
        stage="learner",
        topic="docs.clean",
        partition=2,
        offset=7,
        max_bytes=4,
    )
    names = [k for k, _ in letter.headers]
    assert names == [
        "mbc-source-topic",
        "mbc-source-partition",
        "mbc-source-offset",
        "mbc-reason",
        "mbc-detail",
        "mbc-stage",
        "mbc-original-size",
        "mbc-original-sha256",
        "mbc-truncated",
    ]
    assert letter.value == b"xxxx" and letter.header("mbc-truncated") == b"1"
    assert letter.header("mbc-original-size") == b"10" and len(letter.header("mbc-detail") or b"") == 1000
