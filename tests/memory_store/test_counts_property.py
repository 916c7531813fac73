"""Counts equal a recount from the stored codes after random inserts, re-inserts and deletes,
for the whole memory and for slices by time (whole and partial days) and source."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_store.store import MemoryStore
from tests.memory_store.helpers import T0, as_dict, doc, recount

NUM_CODES = 16  # few codes, so counts collide often
SOURCES = ("a", "b", "c")
# Times over four days, mostly on a 6-hour grid so that many documents and bounds fall exactly on
# midnight (where whole-day counts and edge recounts meet), sometimes anywhere to the microsecond.
times = st.one_of(
    st.integers(0, 16).map(lambda i: T0 + timedelta(hours=6 * i)),
    st.integers(0, 4 * 86_400_000_000).map(lambda us: T0 + timedelta(microseconds=us)),
)
documents = st.tuples(
    st.integers(0, 40),  # id: small pool, so re-inserts and deletes hit stored ids
    st.lists(st.integers(0, NUM_CODES - 1), min_size=1, max_size=6),  # codes, K varies
    st.sampled_from(SOURCES),
    times,
    st.sampled_from([0, 1]),  # which codebook version
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(documents, min_size=1, max_size=12)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 40), min_size=1, max_size=5)),
    ),
    min_size=1,
    max_size=8,
)
slices = st.lists(
    st.tuples(st.none() | times, st.none() | times, st.none() | st.sampled_from((*SOURCES, "nobody"))),
    min_size=1,
    max_size=4,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, cuts=slices)
def test_counts_equal_recount(
    store: MemoryStore,
    ops: list[tuple[str, list]],  # type: ignore[type-arg]
    cuts: list[tuple[datetime | None, datetime | None, str | None]],
) -> None:
    # The store persists across examples: the invariant must hold for whatever state they left.
    versions = [i.version for i in store.codebook_versions()]
    while len(versions) < 2:
        import numpy as np

        versions.append(
            store.add_codebook_version(np.eye(NUM_CODES, 4, dtype=np.float32) * (len(versions) + 1))
        )
    for kind, payload in ops:
        if kind == "write":
            batch = [
                doc(f"id{i}", codes, versions[v], NUM_CODES, source=src, published_at=ts)
                for i, codes, src, ts, v in payload
            ]
            before = {d.id for d in batch if store.document(d.id) is not None}
            result = store.write_batch(batch)
            assert set(result.inserted) == {d.id for d in batch} - before
        else:
            store.delete_documents([f"id{i}" for i in payload])
        assert as_dict(store.counts()) == recount(store)
    for since, until, source in cuts:
        if since is not None and until is not None and since > until:
            since, until = until, since
        assert as_dict(store.counts(since=since, until=until, source=source)) == recount(
            store, since, until, source
        ), (since, until, source)
