"""Packed code storage (memory_store.codec) round-trips for every C in [2, 65536] and K in [1, 64],
at ⌈log₂C⌉ bits per code; format 2 for G groups at ⌈log₂(C/G)⌉ bits per code, and format-1 blobs
of grouped codebooks still read."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memory_store.codec import (
    CODE_FORMAT_VERSION,
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


@st.composite
def grouped_banks(draw: st.DrawFn) -> tuple[int, int, int, np.ndarray]:
    """(G, C, K, codes (N, K)): G groups of C/G codes, K = vectors·G slots, slot j in group j mod G."""
    g = draw(st.sampled_from([1, 2, 4, 8]))
    c_group = draw(st.integers(2, 65536 // g))
    vectors = draw(st.integers(1, 16))
    n = draw(st.integers(0, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offsets = rng.integers(0, c_group, size=(n, vectors, g))
    if draw(st.booleans()) and n:
        offsets[0] = c_group - 1  # every group's widest value
        offsets[-1, 0] = 0
    codes = (offsets + np.arange(g) * c_group).reshape(n, vectors * g)  # (N, K·G) global indices
    return g, g * c_group, vectors * g, codes


@settings(max_examples=400, deadline=None)
@given(grouped_banks())
def test_format_2_round_trip_for_grouped_codebooks(bank: tuple[int, int, int, np.ndarray]) -> None:
    g, c, k, codes = bank
    assert CODE_FORMAT_VERSION == 2
    blobs = pack_codes_batch(codes, c, groups=g)
    size = math.ceil(k * max(1, math.ceil(math.log2(c // g))) / 8)
    assert all(len(b) == packed_size(k, c, groups=g) == size for b in blobs)
    out = unpack_codes_batch(blobs, k, c, groups=g, code_format=2)
    assert out.dtype == np.int64
    assert np.array_equal(out.reshape(codes.shape), codes)
    # format 1 of the same codes (what earlier builds stored) still reads, at the global width
    old = pack_codes_batch(codes, c, groups=g, code_format=1)
    assert all(len(b) == packed_size(k, c, code_format=1) for b in old)
    assert np.array_equal(unpack_codes_batch(old, k, c, groups=g, code_format=1).reshape(codes.shape), codes)
    if g == 1:
        assert old == blobs  # G = 1: both formats are the same bytes


def test_format_1_bytes_are_unchanged() -> None:
    """A blob an earlier build stored (format 1, G = 4: 48 codes x 11 bits) decodes as before."""
    codes = (np.arange(48) % 4) * 512 + np.arange(48) * 7 % 512  # slot j in group j mod 4
    bits = "".join(format(int(c), "011b")[::-1] for c in codes)  # LSB first, slot 0 first
    bits += "0" * (-len(bits) % 8)
    stored = bytes(int(bits[i : i + 8][::-1], 2) for i in range(0, len(bits), 8))
    assert len(stored) == 66 and pack_codes(codes, 2048, groups=4, code_format=1) == stored
    assert unpack_codes(stored, 48, 2048, groups=4, code_format=1).tolist() == codes.tolist()
    assert unpack_codes(stored, 48, 2048, code_format=1).tolist() == codes.tolist()  # G plays no part


def test_code_space_setting_is_54_bytes_per_document() -> None:
    """K = 12 context vectors x G = 4 codes of C = 512 each: 48 codes of 9 bits (66 bytes in format 1)."""
    assert packed_size(48, 4 * 512, groups=4) == 54
    assert packed_size(48, 4 * 512, groups=4, code_format=1) == 66
    assert packed_size(12, 512, groups=1) == packed_size(12, 512, code_format=1) == 14


def test_format_2_bit_order_is_documented() -> None:
    # G = 2 groups of 4 codes (2 bits each): codes 1, 6, 3, 4 are offsets 1, 2, 3, 0 in groups 0, 1, 0, 1
    # -> bits 10 01 11 00 (LSB first) -> 0b00111001
    assert pack_codes([1, 6, 3, 4], 8, groups=2) == bytes([0b00111001])
    assert unpack_codes(bytes([0b00111001]), 4, 8, groups=2).tolist() == [1, 6, 3, 4]


def test_format_2_rejects_what_it_cannot_write() -> None:
    with pytest.raises(CodecError, match="group"):
        pack_codes([4, 4], 8, groups=2)  # slot 0 is group 0: [0, 4)
    with pytest.raises(CodecError, match="group"):
        pack_codes([0, 3], 8, groups=2)  # slot 1 is group 1: [4, 8)
    with pytest.raises(CodecError, match="whole vectors"):
        packed_size(3, 8, groups=2)
    with pytest.raises(CodecError, match="groups"):
        packed_size(4, 10, groups=4)  # 10 codes do not split into 4 groups
    with pytest.raises(CodecError, match="groups"):
        packed_size(4, 8, groups=8)  # groups of one code
    with pytest.raises(CodecError, match="code format 3"):
        unpack_codes(b"\x00", 4, 8, groups=2, code_format=3)
    with pytest.raises(CodecError, match=">= 3 codes per slot"):
        unpack_codes(bytes([0b11]), 2, 6, groups=2)  # C_g = 3 in 2 bits: the value 3 is not a code
