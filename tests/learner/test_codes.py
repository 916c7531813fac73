"""Packed code storage (memory_store.codec, format 1) round-trips for every C in [2, 65536] and
K in [1, 64], at ⌈log₂C⌉ bits per code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_store.codec import (
    CodecError,
    bits_per_code,
    pack_codes,
    pack_codes_batch,
    packed_size,
    unpack_codes,
    unpack_codes_batch,
)


@st.composite
def banks(draw: st.DrawFn) -> tuple[int, int, np.ndarray]:
    c = draw(st.integers(2, 65536))
    k = draw(st.integers(1, 64))
    n = draw(st.integers(0, 8))
    extremes = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, c, size=(n, k))
    if extremes and n:
        codes[0] = c - 1  # all bits of the widest value set
        codes[-1, 0] = 0
    return c, k, codes


@settings(max_examples=400, deadline=None)
@given(banks())
def test_pack_unpack_round_trip(bank: tuple[int, int, np.ndarray]) -> None:
    c, k, codes = bank
    blobs = pack_codes_batch(codes, c)
    assert all(
        len(b) == packed_size(k, c) == math.ceil(k * max(1, math.ceil(math.log2(c))) / 8) for b in blobs
    )
    out = unpack_codes_batch(blobs, k, c)
    assert out.dtype == np.int64
    assert np.array_equal(out.reshape(codes.shape), codes)


@pytest.mark.parametrize("bits", range(1, 17))
def test_every_bit_width_and_every_k_at_the_boundaries(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for c in {max(2, 2 ** (bits - 1) + 1), 2**bits}:
        assert bits_per_code(c) == bits
        for k in range(1, 65):
            codes = rng.integers(0, c, size=(3, k))
            codes[1] = c - 1
            assert np.array_equal(unpack_codes_batch(pack_codes_batch(codes, c), k, c), codes)


def test_paper_setting_is_14_bytes_per_document() -> None:
    codes = np.arange(12) * 40
    blob = pack_codes(codes, 512)
    assert len(blob) == 14
    assert unpack_codes(blob, 12, 512).tolist() == codes.tolist()


def test_bit_order_is_documented_little_endian() -> None:
    # C = 4 (2 bits): codes 1, 2, 3 -> bits 10 01 11 (LSB first) -> 0b00111001
    assert pack_codes([1, 2, 3], 4) == bytes([0b00111001])


def test_out_of_range_codes_and_wrong_sizes_are_rejected() -> None:
    with pytest.raises(CodecError):
        pack_codes([4], 4)
    with pytest.raises(CodecError):
        unpack_codes(b"\x00\x00", 1, 4)
    with pytest.raises(CodecError):
        bits_per_code(65537)
