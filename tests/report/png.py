"""A strict PNG reader for the tests: signature, chunk CRCs, IHDR, and the pixel data size."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel (no palette images)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from IHDR, after checking the file is a complete, uncorrupted PNG whose
    decompressed image data has exactly height x (1 filter byte + width x channels) bytes."""
    data = path.read_bytes()
    assert data[:8] == SIGNATURE, f"{path.name}: not a PNG signature"
    chunks: list[tuple[bytes, bytes]] = []
    pos = 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path.name}: bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b""), f"{path.name}: truncated"
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and colour in _CHANNELS and interlace == 0, (depth, colour, interlace)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == height * (1 + width * _CHANNELS[colour]), f"{path.name}: wrong image data size"
    return width, height
