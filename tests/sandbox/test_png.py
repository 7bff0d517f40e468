"""The stdlib PNG encoder and the image explanations built on the same layout."""

from __future__ import annotations

import struct
import zlib

import pytest

from modzy_retrain.sandbox._content import image_layout, image_mask_rle, render_image
from modzy_retrain.sandbox._png import decode_rgb, encode_rgb


def test_roundtrip() -> None:
    pixels = bytes(range(256)) * 3  # 16 x 16 x 3
    data = encode_rgb(16, 16, pixels)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_rgb(data) == (16, 16, pixels)


def test_chunks_have_valid_crcs() -> None:
    data = encode_rgb(2, 1, b"\x00\x00\x00\xff\xff\xff")
    pos = 8
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        kinds.append(kind)
        pos += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError, match="pixel bytes"):
        encode_rgb(2, 2, b"\x00" * 5)
    with pytest.raises(ValueError, match="positive"):
        encode_rgb(0, 2, b"")
    with pytest.raises(ValueError, match="not a PNG"):
        decode_rgb(b"GIF89a")


def test_image_depends_on_label() -> None:
    cat = decode_rgb(render_image("tabby cat", 42))[2]
    bus = decode_rgb(render_image("school bus", 42))[2]
    assert cat != bus
    x, y, _ = image_layout(42)
    offset = (y * 16 + x) * 3
    # The object's corner has the class colour (within the noise).
    assert abs(bus[offset] - 255) <= 12
    assert abs(cat[offset] - 150) <= 12


def test_mask_rle_matches_layout() -> None:
    x0, y0, side = image_layout(7)
    runs = image_mask_rle(7)["maskRLE"][0]
    mask = []
    value = 0
    for run in runs:
        mask += [value] * run
        value = 1 - value
    assert len(mask) == 256
    # Column-major: index = x * height + y.
    for x in range(16):
        for y in range(16):
            inside = x0 <= x < x0 + side and y0 <= y < y0 + side
            assert mask[x * 16 + y] == int(inside)
