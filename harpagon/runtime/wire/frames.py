"""Encoded video frames on the wire (harpagon.v1.Frame): JPEG or PNG bytes, as Triton clients send
images, or raw RGB pixels. A worker decodes and resizes them inside the batch, on its device; this
module only reads headers, so the frontend can refuse a bad frame without decoding it.

`check` reads a frame's dimensions from its header (the JPEG SOF marker, the PNG IHDR chunk) in
pure Python with a bounded scan, and refuses a frame past MAX_FRAME_PIXELS before any decoder sees
it: a few kilobytes of PNG can claim 100000 x 100000 pixels (a decompression bomb).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.v1 import worker_pb2 as pb

ENCODINGS = ("jpeg", "png", "raw")
#: Bytes of one encoded frame (an 8K JPEG at high quality is ~10 MiB; raw 2048 x 2048 x 3 is 12 MiB).
MAX_FRAME_BYTES = 32 << 20
#: Pixels of one frame: 8192 x 8192 (as data_plane.MAX_ITEM_ELEMENTS / 3); 192 MiB decoded as RGB.
MAX_FRAME_PIXELS = 8192 * 8192
#: JPEG segments read before the SOF marker; real files have a handful (APPn, DQT, DHT) before it.
MAX_JPEG_SEGMENTS = 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
#: Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length: TEM and RST0-7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One frame as sent: `data` in `encoding`; `height` and `width` only for "raw" (H x W x 3 uint8,
    C order). `data` may be a read-only view of the client's request (the frontend copies a frame's
    bytes only into its worker's request)."""

    data: bytes | memoryview
    encoding: str
    height: int = 0
    width: int = 0

    def to_proto(self) -> pb.Frame:
        return pb.Frame(data=bytes(self.data), encoding=self.encoding, height=self.height, width=self.width)

    @staticmethod
    def from_proto(f: pb.Frame) -> EncodedFrame:
        """As sent, unchecked (the worker checks each frame alone, so one bad frame fails only itself)."""
        return EncodedFrame(f.data, f.encoding, int(f.height), int(f.width))


def sniff(data: bytes) -> str | None:
    """"jpeg" or "png" by the magic bytes, else None."""
    if data[:3] == _JPEG_SOI:
        return "jpeg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    return None


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    pos = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 1 >= len(data) or data[pos] != 0xFF:
            raise InvalidArgument(f"JPEG frame: no SOF marker before byte {pos} of {len(data)} (truncated or "
                                  f"not a JPEG)")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            raise InvalidArgument(f"JPEG frame: marker 0x{marker:02X} at byte {pos} before any SOF marker")
        if pos + 4 > len(data):
            break
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2:
            raise InvalidArgument(f"JPEG frame: segment 0x{marker:02X} at byte {pos} has length {length}")
        if marker in _SOF:
            if length < 8 or pos + 9 > len(data):
                break
            return int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big")
        pos += 2 + length
    else:
        raise InvalidArgument(f"JPEG frame: no SOF marker in its first {MAX_JPEG_SEGMENTS} segments")
    raise InvalidArgument(f"JPEG frame: truncated header ({len(data)} bytes)")


def _png_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise InvalidArgument(f"PNG frame: no IHDR chunk at byte 8 (truncated or not a PNG; {len(data)} bytes)")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def dimensions(frame: EncodedFrame) -> tuple[int, int]:
    """(height, width) from the frame's header, without decoding; raises InvalidArgument when it
    cannot be read."""
    if frame.encoding == "raw":
        return frame.height, frame.width
    found = sniff(frame.data)
    if found != frame.encoding:
        raise InvalidArgument(f"frame encoding is {frame.encoding!r}, but its bytes are "
                              f"{'not an image' if found is None else repr(found)}")
    return _jpeg_dimensions(frame.data) if found == "jpeg" else _png_dimensions(frame.data)


def check_envelope(frame: EncodedFrame) -> None:
    """Raise InvalidArgument for a frame whose encoding is unknown or whose bytes are over the bound:
    what can be told without reading its content."""
    if frame.encoding not in ENCODINGS:
        raise InvalidArgument(f"frame encoding must be one of {', '.join(ENCODINGS)}, got {frame.encoding!r}")
    if len(frame.data) > MAX_FRAME_BYTES:
        raise InvalidArgument(f"frame data is {len(frame.data)} bytes, more than {MAX_FRAME_BYTES}")


def check(frame: EncodedFrame) -> tuple[int, int]:
    """(height, width) of a frame a decoder may be given; raises InvalidArgument, naming the field
    and the value, for one that must not be."""
    check_envelope(frame)
    if frame.encoding != "raw" and (frame.height or frame.width):
        raise InvalidArgument(f"frame height and width are for raw frames only, got {frame.height} x "
                              f"{frame.width} for {frame.encoding!r}")
    height, width = dimensions(frame)
    if height < 1 or width < 1:
        raise InvalidArgument(f"frame dimensions must be >= 1, got {height} x {width}")
    if height * width > MAX_FRAME_PIXELS:
        raise InvalidArgument(f"frame of {height} x {width} pixels is more than {MAX_FRAME_PIXELS} pixels")
    if frame.encoding == "raw" and len(frame.data) != height * width * 3:
        raise InvalidArgument(f"raw frame data is {len(frame.data)} bytes, but {height} x {width} x 3 is "
                              f"{height * width * 3}")
    return height, width


# --- a batch of frames on the wire to a worker -----------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    """A length-delimited field (wire type 2): its key, its length and the payload, uncopied."""
    return [bytes((tag << 3 | 2,)), _varint(len(payload)), payload]


def _frame_fields(f: EncodedFrame) -> list[bytes | memoryview]:
    parts = [*_field(1, f.data), *_field(2, f.encoding.encode())]
    if f.height:
        parts += [bytes((3 << 3,)), _varint(f.height)]
    if f.width:
        parts += [bytes((4 << 3,)), _varint(f.width)]
    return parts


def frames_request(module: str, frames: Sequence[EncodedFrame]) -> bytes:
    """`InferRequest(module=module, frames=frames)` serialised by hand: the frames' bytes (views of the
    clients' requests) are copied once, into the message, where building the message and serialising it
    copies each twice more (and took 2.5x the time, measured side by side on 1280x720 raw frames). The
    same bytes a protobuf encoder writes (tests/unit/test_decode.py checks it)."""
    parts = _field(1, module.encode())
    for f in frames:
        inner = _frame_fields(f)
        parts += [bytes((4 << 3 | 2,)), _varint(sum(len(p) for p in inner)), *inner]
    return b"".join(parts)


# --- frames as clients send them (benchmarks, the demo, `harpagon profile --decode`) --------------


def synthetic_frame(height: int, width: int) -> np.ndarray:
    """An [H, W, 3] uint8 frame with some structure (gradients and noise), so that JPEG sizes and decode
    times are those of camera frames rather than of flat colour (a 1280x720 one is ~230 kB at quality 85)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), ((x + y) % 256)], axis=-1)
    return np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def encode_frame(frame: np.ndarray, encoding: str, quality: int = 85) -> EncodedFrame:
    """`frame` ([H, W, 3] uint8) as a client sends it: JPEG (at `quality`) or PNG bytes, or raw pixels."""
    if encoding == "raw":
        return EncodedFrame(np.ascontiguousarray(frame).tobytes(), "raw", frame.shape[0], frame.shape[1])
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame).save(out, format=encoding.upper(), **({"quality": quality} if encoding == "jpeg" else {}))
    return EncodedFrame(out.getvalue(), encoding)
