"""Decoding a batch of encoded frames into a module's input, on the executor's device.

Each frame is checked first (`wire/frames.py: check`: encoding, bytes, header, pixels), so a
decompression bomb is refused before a decoder allocates anything. A frame that fails its check or
its decode is an error of its item alone: its input is zeros and the batch runs for the others.

Decoders: torchvision's (`torchvision.io.decode_jpeg` / `decode_png`): on CPU libjpeg-turbo and libpng,
one frame per task of a small thread pool (they release the GIL); on CUDA, JPEGs in one batched
nvJPEG call (`decode_jpeg(list, device="cuda")`), PNGs on the CPU (nvJPEG does not read PNG) and
copied over. Raw frames are a view of their bytes. torchvision 0.29 deprecates these decoders in
favour of TorchCodec, which is not a dependency of this package: TorchCodec would add hardware video
decoding (NVDEC), which matters once clients send a video stream instead of single images; for
per-frame JPEG/PNG it calls the same libraries. Switch when torchvision removes its decoders or the
wire carries video. Until then only that deprecation warning is silenced, by message and module
(a filter, not `catch_warnings`: that is process-wide state, unsafe with decoding threads).

Resize: `torch.nn.functional.interpolate`, bilinear with antialiasing (a downscale that averages, as
PIL's does, instead of aliasing), frames of one size in one call; the output is float32 in [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harpagon.runtime.wire.errors import InvalidArgument
from harpagon.runtime.wire.frames import EncodedFrame, check


def _quiet() -> None:
    """Silence torchvision's deprecation of its decoders, and only it (again each batch: a test
    harness or caller may have reset the filters); and the read-only-buffer warning of this module,
    whose frames' bytes are only read."""
    warnings.filterwarnings("ignore", message=r"The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning, module=r"torchvision\.io\.")
    warnings.filterwarnings("ignore", message=r"The given buffer is not writable", category=UserWarning,
                            module=r"harpagon\.runtime\.worker\.decode")


@dataclass(frozen=True, slots=True)
class Decoded:
    """A batch of frames decoded: `images` [n, 3, h, w] in [0, 1] on the device (float32, or the `out`
    it was given; zeros for an item in error), each good item's full-resolution frame `full[i]` ([3, H, W] uint8 on the device;
    None in error), and `errors` per item."""

    images: torch.Tensor
    full: list[torch.Tensor | None]
    errors: dict[int, str]


#: Characters of a decoder's message kept in an item's error (they travel back to the client).
MAX_ERROR_CHARS = 300
#: Pixels of full frames made float at once (to resize them, or to cut crops from them): their float copy
#: is 12 bytes a pixel (384 MiB here), where a whole batch at once would be 64 1080p frames' 1.6 GB
#: beside the model on the device.
RESIZE_PIXELS = 32 << 20


def chunks(items: list[int], height: int, width: int) -> list[list[int]]:
    """`items`, frames of `height` x `width`, in runs of at most RESIZE_PIXELS pixels (at least one frame
    each): the full frames made float at once."""
    step = max(1, RESIZE_PIXELS // (height * width))
    return [items[k:k + step] for k in range(0, len(items), step)]


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _bytes(data: bytes) -> torch.Tensor:
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def _decode_cpu(frame: EncodedFrame, size: tuple[int, int]) -> torch.Tensor:
    """One checked frame as [3, H, W] uint8 on the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg, decode_png

    h, w = size
    if frame.encoding == "raw":
        return _bytes(frame.data).view(h, w, 3).permute(2, 0, 1)
    decode = decode_jpeg if frame.encoding == "jpeg" else decode_png
    image = decode(_bytes(frame.data), mode=ImageReadMode.RGB)
    if tuple(image.shape) != (3, h, w):  # the header lied about what the decoder made of the bytes
        raise InvalidArgument(f"decoded {frame.encoding} frame is {list(image.shape)}, its header says "
                              f"[3, {h}, {w}]")
    return image


def _decode_cuda_jpegs(frames: Sequence[EncodedFrame], device: torch.device) -> list[torch.Tensor | Exception]:
    """JPEGs in one nvJPEG call; if the batch fails, one call each, so a bad frame fails only itself."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [_bytes(f.data) for f in frames]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except Exception:  # noqa: BLE001 - which frame failed is found below
        pass
    out: list[torch.Tensor | Exception] = []
    for d in data:
        try:
            out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
        except Exception as exc:  # noqa: BLE001 - a corrupt frame: its item's error
            out.append(exc)
    return out


def decode_frames(frames: Sequence[EncodedFrame], shape: tuple[int, ...], device: str | torch.device,
                  pool: ThreadPoolExecutor | None = None, out: torch.Tensor | None = None) -> Decoded:
    """Frames decoded and resized to `shape` ([3, h, w]) on `device`; CPU decodes run on `pool`
    (None: in the calling thread). `out`, a [>= n, *shape] tensor on `device` (a runner's padded batch,
    of its dtype), is filled in place (its first n rows) instead of a new float32 batch."""
    if len(shape) != 3 or shape[0] != 3:
        raise InvalidArgument(f"frames decode to [3, h, w] inputs, not input_shape {list(shape)}")
    _quiet()
    device = torch.device(device)
    n = len(frames)
    errors: dict[int, str] = {}
    sizes: dict[int, tuple[int, int]] = {}
    for i, frame in enumerate(frames):
        try:
            sizes[i] = check(frame)
        except InvalidArgument as exc:
            errors[i] = str(exc)
    full: list[torch.Tensor | None] = [None] * n
    on_cpu = list(sizes)
    if device.type == "cuda":
        jpegs = [i for i in sizes if frames[i].encoding == "jpeg"]
        for i, got in zip(jpegs, _decode_cuda_jpegs([frames[i] for i in jpegs], device), strict=True):
            if isinstance(got, Exception):
                errors[i] = f"jpeg frame does not decode: {_short(got)}"
            elif tuple(got.shape) != (3, *sizes[i]):
                errors[i] = f"decoded jpeg frame is {list(got.shape)}, its header says [3, {sizes[i][0]}, {sizes[i][1]}]"
            else:
                full[i] = got
        on_cpu = [i for i in sizes if frames[i].encoding != "jpeg"]

    def one(i: int) -> torch.Tensor | str:
        try:
            return _decode_cpu(frames[i], sizes[i])
        except Exception as exc:  # noqa: BLE001 - corrupt bytes: its item's error, not the batch's
            return f"{frames[i].encoding} frame does not decode: {_short(exc)}"

    results = list(pool.map(one, on_cpu)) if pool is not None and len(on_cpu) > 1 else [one(i) for i in on_cpu]
    for i, got in zip(on_cpu, results, strict=True):
        if isinstance(got, str):
            errors[i] = got
        else:
            full[i] = got.to(device, non_blocking=True) if device.type != "cpu" else got
    if out is None:
        images = torch.zeros((n, *shape), dtype=torch.float32, device=device)
    else:
        images = out[:n]
        images.zero_()
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(full):
        if image is not None:
            by_size.setdefault((image.shape[1], image.shape[2]), []).append(i)
    for (h, w), same in by_size.items():
        for items in chunks(same, h, w):  # a chunk at a time: bounded float memory, whatever the batch
            batch = torch.stack([full[i] for i in items]).float().div_(255.0)  # type: ignore[misc]
            if (h, w) != tuple(shape[1:]):
                batch = F.interpolate(batch, size=tuple(shape[1:]), mode="bilinear", antialias=True,
                                      align_corners=False).clamp_(0.0, 1.0)
            images[items] = batch.to(images.dtype)
    return Decoded(images, full, errors)
