"""Valid images with enormous dimensions that are small on disk, made on the spot (never committed).

A 30000 x 30000 JPEG is a few MB because every 8x8 block is the same flat grey: with one-symbol
Huffman tables (DC difference category 0 -> code `0`, AC end-of-block -> code `0`) a block costs
two bits, so the entropy-coded data is all zero bytes. Decoders accept it as a baseline
grayscale JPEG; decoding it with OpenCV needs width x height x 3 bytes (2.7 GB here).
PNG, BMP and WebP are written with valid headers; only the header matters to a size check.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def flat_jpeg(width: int, height: int) -> bytes:
    """A decodable baseline grayscale JPEG, any size up to 65535 x 65535, ~width*height/256 B."""
    quant = _segment(0xDB, bytes([0]) + bytes([1] * 64))
    frame = _segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0]))
    one_code = bytes([1] + [0] * 15) + bytes([0])  # one code of length 1, for symbol 0
    huffman = _segment(0xC4, bytes([0x00]) + one_code) + _segment(0xC4, bytes([0x10]) + one_code)
    scan = _segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
    blocks = -(-width // 8) * -(-height // 8)
    data = bytes(-(-blocks * 2 // 8))  # two zero bits per block
    return b"\xff\xd8" + quant + frame + huffman + scan + data + b"\xff\xd9"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """Signature + IHDR (8-bit RGB) + an empty IDAT + IEND: the size is all a check may read."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def flat_png(width: int, height: int, path: Path) -> None:
    """A decodable 8-bit grayscale PNG of zeros, streamed to `path` (memory: one row)."""
    compressor = zlib.compressobj(1)
    row = bytes(width + 1)  # filter byte 0 + the row
    chunks = [compressor.compress(row) for _ in range(height)]
    chunks.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


def bmp_header_only(width: int, height: int) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER (24 bit, bottom-up) with no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def webp_vp8x_header_only(width: int, height: int) -> bytes:
    """RIFF/WEBP with an extended (VP8X) header naming a canvas of width x height."""
    body = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
