"""Byte formats shared by the learner and the memory store. Both import this module; nothing
else defines how codes or codebooks look on disk or on the wire.

Packed codes (``CODE_FORMAT_VERSION`` = 2 is written; formats 1 and 2 are read)
--------------------------------------------------------------------------------
A document's memory is K code indices ("slots"; the document row's ``k``) into a codebook version
of C vectors made of G groups (product quantization) of ``C_g = C / G >= 2`` vectors each; group g
holds indices ``[g·C_g, (g+1)·C_g)``. Slot j belongs to group ``j mod G`` (the learner stores a
context vector's G codes next to each other, group 0 first: K = context vectors × G), so in
format 2 K is a multiple of G. G = 1 is a plain codebook (the ``tiny`` preset; G = 4 for
``smollm2-135m``).

Each slot is written as an unsigned integer of ``b`` bits:

* **format 2**: the index's offset within its group, ``index − (j mod G)·C_g``, in
  ``b = max(1, ceil(log2(C_g)))`` bits. An index outside its slot's group cannot be written.
* **format 1** (earlier builds; still read): the index itself, in ``b = max(1, ceil(log2(C)))``
  bits, whatever G is.

For G = 1 the two formats are the same bytes. The K integers are concatenated into one bit stream,
slot 0 first, each integer least-significant bit first, and the stream is cut into bytes
least-significant bit first (numpy ``packbits(bitorder="little")``), the last byte padded with
zero bits. Size: ``ceil(K * b / 8)`` bytes — 14 bytes for K = 12, C = 512, G = 1 (the reference
code stores 96); for K = 48 codes (12 vectors × G = 4) of C = 2048 (4 × 512), 54 bytes in format 2
(9 bits each), 66 in format 1 (11 bits). A decoded value of ``C_g`` or more (format 1: ``C`` or
more) is not a code and the blob is refused. There is no header inside the blob: K, C, G and the
format version live in the rows that hold it (the codebook version fixes C and G:
``codebook_versions.num_codes`` and ``.groups``; the document row stores ``k`` and
``code_format``).

Codebook vectors, format 1 (``CODEBOOK_FORMAT_VERSION``)
-------------------------------------------------------
``b"MBCB"`` magic, then little-endian ``uint16 format``, ``uint32 C``, ``uint32 D``,
``uint8 dtype`` (1 = float32, 2 = float16), 3 zero bytes, then C × D values row-major,
little-endian. 18-byte header (4 + 2 + 4 + 4 + 1 + 3 padding; no alignment padding).
"""

from __future__ import annotations

import math
import struct
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

CODE_FORMAT_VERSION = 2  # what writers produce
CODE_FORMATS = (1, 2)  # what readers decode
CODEBOOK_FORMAT_VERSION = 1
MAX_CODES = 1 << 16  # C up to 65,536 -> at most 16 bits per code

_CODEBOOK_MAGIC = b"MBCB"
_CODEBOOK_HEADER = struct.Struct("<4sHIIB3x")
_DTYPES: dict[int, np.dtype[np.floating]] = {1: np.dtype("<f4"), 2: np.dtype("<f2")}


def count_rows(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """THE counting rule of stored codes (docs/DESIGN.md §3a), used by the store's count tables and the
    learner's in-memory banks alike: the distinct rows of ``keys`` (M, m) — e.g. (version, code) per
    stored code — sorted by column 0, then 1, ..., each with how often it occurs -> (R, m + 1) int64."""
    keys = np.asarray(keys, dtype=np.int64)
    if keys.shape[0] == 0:
        return np.zeros((0, keys.shape[1] + 1), dtype=np.int64)
    order = np.lexsort(keys.T[::-1])  # sort by column 0, then 1, ... (np.unique(axis=0), faster)
    ordered = keys[order]
    starts = np.flatnonzero(np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)])
    counts = np.diff(np.r_[starts, len(ordered)])
    return np.column_stack([ordered[starts], counts]).astype(np.int64)


class CodecError(ValueError):
    """Bytes or arrays that do not fit the documented format."""


class CodeLayout(NamedTuple):
    """What a codebook version fixes about its documents' packed codes: C codes in G groups."""

    num_codes: int
    groups: int = 1


def bits_per_code(num_codes: int) -> int:
    """Bits needed for one index into a codebook of ``num_codes`` vectors."""
    if not 2 <= num_codes <= MAX_CODES:
        raise CodecError(f"codebook size must be in [2, {MAX_CODES}], got {num_codes}")
    return max(1, math.ceil(math.log2(num_codes)))


def group_size(num_codes: int, groups: int) -> int:
    """C_g: codes per group of a codebook of ``num_codes`` codes in ``groups`` groups."""
    if groups < 1 or num_codes % groups or num_codes // groups < 2:
        raise CodecError(f"{num_codes} codes do not split into {groups} groups of at least 2")
    return num_codes // groups


def _slots(k: int, num_codes: int, groups: int, code_format: int) -> tuple[int, int, npt.NDArray[np.int64]]:
    """The layout of K slots: (bits per slot, values per slot, each slot's group base (K,))."""
    bits_per_code(num_codes)  # C itself in range
    c_group = group_size(num_codes, groups)
    if code_format == 1:
        return bits_per_code(num_codes), num_codes, np.zeros(k, dtype=np.int64)
    if code_format != 2:
        raise CodecError(f"code format {code_format} is not supported (this build reads {CODE_FORMATS})")
    if k % groups:
        raise CodecError(f"K = {k} codes are not whole vectors of G = {groups} groups")
    base = (np.arange(k, dtype=np.int64) % groups) * c_group  # (K,) slot j is in group j mod G
    return bits_per_code(c_group), c_group, base


def packed_size(k: int, num_codes: int, *, groups: int = 1, code_format: int = CODE_FORMAT_VERSION) -> int:
    """Bytes of one document's K packed codes."""
    b, _, _ = _slots(k, num_codes, groups, code_format)
    return (k * b + 7) // 8


def pack_codes_batch(
    codes: npt.ArrayLike, num_codes: int, *, groups: int = 1, code_format: int = CODE_FORMAT_VERSION
) -> list[bytes]:
    """Pack an (N, K) array of indices into N blobs of :func:`packed_size` bytes each."""
    arr = np.asarray(codes)
    if arr.ndim != 2:
        raise CodecError(f"expected an (N, K) array of code indices, got shape {arr.shape}")
    n, k = arr.shape
    b, limit, base = _slots(k, num_codes, groups, code_format)
    values = arr.astype(np.int64) - base  # (N, K)
    if values.size and (values.min() < 0 or values.max() >= limit):
        where = f"[0, {num_codes})" if code_format == 1 else f"its slot's group of {limit} codes"
        raise CodecError(f"code index out of range: every index must lie in {where}")
    shifts = np.arange(b, dtype=np.uint32)
    bits = ((values.astype(np.uint32)[..., None] >> shifts) & 1).astype(np.uint8)  # (N, K, b)
    packed = np.packbits(bits.reshape(n, k * b), axis=1, bitorder="little")  # (N, ceil(K*b/8))
    return [row.tobytes() for row in packed]


def pack_codes(
    codes: npt.ArrayLike, num_codes: int, *, groups: int = 1, code_format: int = CODE_FORMAT_VERSION
) -> bytes:
    """Pack one document's K indices."""
    row = np.asarray(codes).reshape(1, -1)
    return pack_codes_batch(row, num_codes, groups=groups, code_format=code_format)[0]


def unpack_codes_batch(
    blobs: list[bytes], k: int, num_codes: int, *, groups: int = 1, code_format: int = CODE_FORMAT_VERSION
) -> npt.NDArray[np.int64]:
    """Inverse of :func:`pack_codes_batch`: N blobs -> (N, K) int64 indices (global, g·C_g + offset)."""
    b, limit, base = _slots(k, num_codes, groups, code_format)
    size = (k * b + 7) // 8
    for i, blob in enumerate(blobs):
        if len(blob) != size:
            raise CodecError(
                f"blob {i} has {len(blob)} bytes, expected {size} for K={k}, C={num_codes}, G={groups}, "
                f"code format {code_format}"
            )
    if not blobs:
        return np.zeros((0, k), dtype=np.int64)
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), size)
    bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : k * b].reshape(len(blobs), k, b)
    weights = 1 << np.arange(b, dtype=np.int64)  # (b,)
    values = (bits.astype(np.int64) * weights).sum(axis=2)  # (N, K)
    if values.size and values.max() >= limit:
        raise CodecError(f"decoded code value {values.max()} >= {limit} codes per slot")
    return values + base


def unpack_codes(
    blob: bytes, k: int, num_codes: int, *, groups: int = 1, code_format: int = CODE_FORMAT_VERSION
) -> npt.NDArray[np.int64]:
    """Unpack one document's blob into K indices."""
    return unpack_codes_batch([blob], k, num_codes, groups=groups, code_format=code_format)[0]


def unpack_stored(blobs: list[bytes], k: int, layout: CodeLayout, code_format: int) -> npt.NDArray[np.int64]:
    """Stored documents' blobs -> (N, K) indices, with their version's ``layout`` and their format."""
    return unpack_codes_batch(blobs, k, layout.num_codes, groups=layout.groups, code_format=code_format)


def encode_codebook(vectors: npt.ArrayLike, dtype: str = "float32") -> bytes:
    """Serialise a (C, D) codebook in codebook format 1."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise CodecError(f"codebook must be (C, D), got shape {arr.shape}")
    code = {"float32": 1, "float16": 2}.get(dtype)
    if code is None:
        raise CodecError(f"unsupported codebook dtype {dtype!r}")
    header = _CODEBOOK_HEADER.pack(_CODEBOOK_MAGIC, CODEBOOK_FORMAT_VERSION, arr.shape[0], arr.shape[1], code)
    return header + np.ascontiguousarray(arr, dtype=_DTYPES[code]).tobytes()


def decode_codebook(data: bytes) -> npt.NDArray[np.float32]:
    """Parse codebook format 1 into a float32 (C, D) array."""
    if len(data) < _CODEBOOK_HEADER.size:
        raise CodecError("codebook blob shorter than its header")
    magic, version, c, d, code = _CODEBOOK_HEADER.unpack_from(data)
    if magic != _CODEBOOK_MAGIC:
        raise CodecError("not a codebook blob (bad magic)")
    if version != CODEBOOK_FORMAT_VERSION:
        raise CodecError(
            f"codebook format {version} is not supported (this build reads {CODEBOOK_FORMAT_VERSION})"
        )
    if code not in _DTYPES:
        raise CodecError(f"unknown codebook dtype code {code}")
    dtype = _DTYPES[code]
    body = data[_CODEBOOK_HEADER.size :]
    if len(body) != c * d * dtype.itemsize:
        raise CodecError(f"codebook body has {len(body)} bytes, expected {c * d * dtype.itemsize}")
    return np.frombuffer(body, dtype=dtype).reshape(c, d).astype(np.float32)
