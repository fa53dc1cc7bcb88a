"""Encoded frames: headers read without decoding, checks, and batches decoded on the CPU where a bad
frame fails only its own item."""

from __future__ import annotations

import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harpagon.runtime.wire import frames
from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.runtime.wire.frames import MAX_FRAME_BYTES, EncodedFrame, frames_request
from harpagon.runtime.worker.decode import decode_frames
from harpagon.v1 import worker_pb2 as pb


def _encode(kind: str, image: torch.Tensor, **kw) -> bytes:
    from torchvision.io import encode_jpeg, encode_png

    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs; tests only encode with them
        warnings.simplefilter("ignore", DeprecationWarning)
        out = encode_jpeg(image, **kw) if kind == "jpeg" else encode_png(image)
    return out.numpy().tobytes()


def smooth(h: int, w: int) -> torch.Tensor:
    """[3, h, w] uint8 gradients: JPEG keeps them well."""
    y = torch.linspace(0, 1, h)[:, None].expand(h, w)
    x = torch.linspace(0, 1, w)[None, :].expand(h, w)
    return (torch.stack([y, x, (x + y) / 2]) * 255).round().to(torch.uint8)


def jpeg(image: torch.Tensor, quality: int = 95) -> EncodedFrame:
    return EncodedFrame(_encode("jpeg", image, quality=quality), "jpeg")


def png(image: torch.Tensor) -> EncodedFrame:
    return EncodedFrame(_encode("png", image), "png")


def raw(image: torch.Tensor) -> EncodedFrame:
    return EncodedFrame(image.permute(1, 2, 0).contiguous().numpy().tobytes(), "raw", image.shape[1], image.shape[2])


def bomb(height: int, width: int) -> bytes:
    """A valid PNG signature and IHDR chunk claiming height x width, then a few bytes of IDAT."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\0" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
            + (len(idat) - 4).to_bytes(4, "big") + idat + zlib.crc32(idat).to_bytes(4, "big"))


# --- headers -------------------------------------------------------------------------------------


def test_sniff_and_dimensions_from_headers():
    image = smooth(37, 53)
    j, p = jpeg(image), png(image)
    assert frames.sniff(j.data) == "jpeg" and frames.sniff(p.data) == "png" and frames.sniff(b"GIF89a") is None
    assert frames.dimensions(j) == (37, 53) and frames.dimensions(p) == (37, 53)
    assert frames.check(raw(image)) == (37, 53)
    assert frames.dimensions(EncodedFrame(bomb(100_000, 70_000), "png")) == (100_000, 70_000)
    assert EncodedFrame.from_proto(j.to_proto()) == j
    assert EncodedFrame.from_proto(pb.Frame(data=b"ab", encoding="raw", height=1, width=2)) == EncodedFrame(
        b"ab", "raw", 1, 2)


@pytest.mark.parametrize("frame, match", [
    (EncodedFrame(b"GIF89a....", "gif"), "encoding must be one of jpeg, png, raw, got 'gif'"),
    (EncodedFrame(b"\0" * (MAX_FRAME_BYTES + 1), "raw", 1, 1), f"{MAX_FRAME_BYTES + 1} bytes, more than"),
    (EncodedFrame(b"\0" * 10, "raw", 2, 2), "raw frame data is 10 bytes, but 2 x 2 x 3 is 12"),
    (EncodedFrame(b"", "raw", 0, 5), "dimensions must be >= 1, got 0 x 5"),
    (EncodedFrame(b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"), "JPEG frame"),
    (EncodedFrame(b"not an image at all", "jpeg"), "bytes are not an image"),
    (EncodedFrame(bomb(100_000, 100_000), "png"), "100000 x 100000 pixels is more than"),
    (EncodedFrame(bomb(4, 4), "jpeg"), "encoding is 'jpeg', but its bytes are 'png'"),
], ids=["encoding", "bytes", "raw-size", "raw-zero", "truncated-jpeg", "garbage", "bomb", "mislabelled"])
def test_check_refuses_with_the_field_and_value(frame, match):
    with pytest.raises(InvalidArgument, match=match):
        frames.check(frame)


def test_jpeg_header_scan_is_bounded():
    many = b"\xff\xd8" + b"\xff\xfe\x00\x02" * (frames.MAX_JPEG_SEGMENTS + 10)  # empty comments, no SOF
    with pytest.raises(InvalidArgument, match="no SOF marker in its first 1024 segments"):
        frames.dimensions(EncodedFrame(many, "jpeg"))


# --- decoding ------------------------------------------------------------------------------------


def test_decode_to_the_input_shape_on_cpu():
    image = smooth(64, 96)
    with ThreadPoolExecutor(2) as pool:
        got = decode_frames([jpeg(image), png(image), raw(image)], (3, 32, 48), "cpu", pool)
    assert got.errors == {} and got.images.shape == (3, 3, 32, 48) and got.images.dtype == torch.float32
    want = F.interpolate(image[None].float() / 255, size=(32, 48), mode="bilinear", antialias=True,
                         align_corners=False)[0]
    assert (got.images[0] - want).abs().mean() * 255 < 8  # JPEG error
    assert torch.allclose(got.images[1], want, atol=1e-6) and torch.allclose(got.images[2], want, atol=1e-6)
    assert all(torch.equal(f, image) for f in got.full[1:])  # full resolution, lossless
    same = decode_frames([png(image)], (3, 64, 96), "cpu")  # no resize: the pixels exactly
    assert torch.equal((same.images[0] * 255).round().to(torch.uint8), image)


def test_a_batch_is_resized_a_chunk_at_a_time_with_the_same_result(monkeypatch):
    """The float copies of full frames are bounded (RESIZE_PIXELS), not a whole batch's; the images are
    the same as resized at once, every frame in its own place."""
    from harpagon.runtime.worker import decode

    frames = [raw(smooth(64, 96) // (k + 1)) for k in range(5)] + [raw(smooth(40, 40))]
    whole = decode_frames(frames, (3, 32, 48), "cpu")
    calls: list[int] = []
    real = F.interpolate
    monkeypatch.setattr(decode, "RESIZE_PIXELS", 2 * 64 * 96)  # two 64x96 frames a chunk
    monkeypatch.setattr(decode.F, "interpolate", lambda x, **kw: calls.append(len(x)) or real(x, **kw))
    chunked = decode_frames(frames, (3, 32, 48), "cpu")
    assert sorted(calls) == [1, 1, 2, 2]  # 64x96: 2 + 2 + 1; 40x40: 1
    assert torch.equal(chunked.images, whole.images)


def test_grayscale_jpeg_decodes_to_three_channels():
    gray = smooth(24, 24)[:1]
    got = decode_frames([jpeg(gray)], (3, 24, 24), "cpu")
    assert got.errors == {} and got.full[0].shape == (3, 24, 24)
    for c in range(3):
        assert (got.images[0, c] * 255 - gray[0].float()).abs().mean() < 8


def test_each_bad_frame_is_an_error_of_its_item_alone():
    image = smooth(40, 40)
    good = jpeg(image)
    batch = [
        good,
        EncodedFrame(good.data[: len(good.data) // 2], "jpeg"),  # truncated: header fine, decode fails
        EncodedFrame(np.random.default_rng(0).bytes(5000), "jpeg"),  # random bytes
        png(image),
        EncodedFrame(bomb(100_000, 100_000), "png"),  # refused before any decode
        EncodedFrame(b"\0" * 100, "raw", 4, 4),  # wrong size
        EncodedFrame(b"\0" * (MAX_FRAME_BYTES + 3), "raw", 1, 1),  # over the byte limit
        raw(image),
    ]
    with ThreadPoolExecutor(2) as pool:
        got = decode_frames(batch, (3, 20, 20), "cpu", pool)
    assert sorted(got.errors) == [1, 2, 4, 5, 6]
    assert "does not decode" in got.errors[1] or "JPEG" in got.errors[1]
    assert "not an image" in got.errors[2]
    assert "100000 x 100000 pixels" in got.errors[4]
    assert "100 bytes, but 4 x 4 x 3 is 48" in got.errors[5]
    assert f"{MAX_FRAME_BYTES + 3} bytes" in got.errors[6]
    for i in got.errors:
        assert got.full[i] is None and not got.images[i].any()  # zeros in
    for i in (0, 3, 7):
        assert got.full[i].shape == (3, 40, 40) and got.images[i].mean() > 0.2


def test_the_bomb_never_reaches_the_decoder(monkeypatch):
    import torchvision.io

    called = []
    monkeypatch.setattr(torchvision.io, "decode_png", lambda *a, **k: called.append(1))
    got = decode_frames([EncodedFrame(bomb(100_000, 100_000), "png")], (3, 8, 8), "cpu")
    assert list(got.errors) == [0] and called == []


def test_frames_need_a_three_channel_image_input():
    with pytest.raises(InvalidArgument, match="not input_shape \\[1000\\]"):
        decode_frames([jpeg(smooth(8, 8))], (1000,), "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_on_cuda_matches_cpu():
    image = smooth(64, 96)
    batch = [jpeg(image), png(image), EncodedFrame(b"\xff\xd8\xff" + b"\0" * 50, "jpeg"), jpeg(image)]
    cpu = decode_frames(batch, (3, 32, 48), "cpu")
    gpu = decode_frames(batch, (3, 32, 48), "cuda")
    assert sorted(gpu.errors) == sorted(cpu.errors) == [2]
    assert gpu.images.device.type == "cuda" and gpu.full[0].device.type == "cuda"
    assert (gpu.images.cpu() - cpu.images).abs().mean() * 255 < 2


@pytest.mark.parametrize("frames", [
    [],
    [EncodedFrame(b"\xff\xd8\xff" + bytes(200), "jpeg")],
    [EncodedFrame(bytes(range(256)) * 1200, "raw", 320, 320), EncodedFrame(b"\x89PNG\r\n\x1a\n", "png"),
     EncodedFrame(bytes(3 * 7 * 300), "raw", 7, 300)],
])
def test_a_batch_of_frames_serialised_by_hand_is_the_message_protobuf_writes(frames):
    """frames_request copies each frame once; a worker parses it as the InferRequest it stands for."""
    module = "cam/détect@32"  # a non-ASCII name: lengths are of the UTF-8 bytes
    ours = frames_request(module, frames)
    assert ours == pb.InferRequest(module=module, frames=[f.to_proto() for f in frames]).SerializeToString()
    parsed = pb.InferRequest.FromString(ours)
    assert parsed.module == module and [EncodedFrame.from_proto(f) for f in parsed.frames] == frames


def test_frames_decode_into_a_given_padded_batch_in_place():
    """A runner's padded batch (its dtype) is filled in place: the same images, rows past the frames kept."""
    image = smooth(64, 96)
    frames = [raw(image), EncodedFrame(b"not a frame", "jpeg"), png(image)]
    alone = decode_frames(frames, (3, 32, 48), "cpu")
    out = torch.full((5, 3, 32, 48), 7.0, dtype=torch.float64)
    got = decode_frames(frames, (3, 32, 48), "cpu", out=out)
    assert got.images.data_ptr() == out.data_ptr() and got.errors.keys() == alone.errors.keys() == {1}
    assert torch.allclose(out[:3], alone.images.double()) and (out[1] == 0).all()  # an item in error: zeros
    assert (out[3:] == 7.0).all()
