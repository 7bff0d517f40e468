"""A minimal PNG encoder (stdlib only), enough for the sandbox's small RGB images."""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    # The CRC covers the chunk type and data, not the length (PNG spec, section 5.3).
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_rgb(width: int, height: int, pixels: bytes) -> bytes:
    """Encode 8-bit RGB ``pixels`` (row-major, ``width * height * 3`` bytes) as a PNG file."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    stride = width * 3
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} pixel bytes, got {len(pixels)}")
    # Each scanline is prefixed with filter type 0 (None); the images are tiny, so the
    # better compression of adaptive filtering is not worth the code.
    raw = b"".join(b"\x00" + pixels[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit depth, colour type RGB
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def decode_rgb(data: bytes) -> tuple[int, int, bytes]:
    """Decode a PNG written by :func:`encode_rgb` back to ``(width, height, pixels)``.

    Only the subset this module writes is supported (8-bit RGB, filter 0, no interlace);
    tests and examples use it to check that files on disk are what the sandbox promised.
    """
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file")
    pos = len(_SIGNATURE)
    width = height = 0
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in {kind!r} chunk")
        if kind == b"IHDR":
            width, height, depth, colour, _, filt, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, filt, interlace) != (8, 2, 0, 0):
                raise ValueError("unsupported PNG variant")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3
    rows = []
    for row in range(height):
        line = raw[row * (stride + 1) : (row + 1) * (stride + 1)]
        if line[0] != 0:
            raise ValueError("unsupported PNG filter")
        rows.append(line[1:])
    return width, height, b"".join(rows)
