"""`harpagon profile`: measure a model's latency per batch size on a device, or (`--decode`) what
decoding and resizing clients' frames costs a worker there."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, int_list, positive_int
from harpagon.config.schema import MAX_SIDE
from harpagon.runtime.wire.frames import ENCODINGS


def add_parser(sub) -> None:
    """`harpagon profile`."""
    pr = sub.add_parser("profile", help="measure a model's latency per batch size on a device",
                        description="Measure mean and std latency per batch size and write them as a "
                                    "`profiles` entry the planner reads; with --decode, measure the decode "
                                    "and resize of frames of a size and encoding instead, and print the "
                                    "hardware's `decode_ms_per_mpixel`.")
    pr.add_argument("--model", help="model registry name (models/registry.yaml); required without --decode")
    pr.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    pr.add_argument("--batches", type=int_list, default=None,
                    help="batch sizes, e.g. 1,2,4,8 (required without --decode; with it, default 1,8)")
    pr.add_argument("--input-size", type=int_list, default=None, help="one item's shape C,H,W (default: registry; "
                    "with --decode, 3,224,224)")
    pr.add_argument("--decode", action="store_true", help="measure frame decode + resize, not a model")
    pr.add_argument("--frame", type=_frame_size, default=(720, 1280), metavar="HxW",
                    help="with --decode: the frames' height x width (default 720x1280)")
    pr.add_argument("--encoding", choices=ENCODINGS, default="jpeg",
                    help="with --decode: how clients send frames (default jpeg)")
    pr.add_argument("--repeats", type=positive_int, default=20, help="timed runs per batch size (default 20)")
    pr.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    pr.add_argument("--hardware", default=None, help="hardware name to record (default: from the device)")
    pr.add_argument("--threads", type=positive_int, default=None, help="torch threads on cpu (default: all cores)")
    pr.add_argument("--out", type=Path, default=None, help="profiles YAML to write or update (required without --decode)")
    pr.set_defaults(func=cmd_profile)


@contextlib.contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of `total` timed runs; yields the function that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("runs", total=total)
        yield lambda n: bar.advance(task, n)


def _frame_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 1 <= int(p) <= MAX_SIDE for p in parts):
        raise argparse.ArgumentTypeError(f"must be HxW, each from 1 to {MAX_SIDE} (e.g. 720x1280), got {text!r}")
    return int(parts[0]), int(parts[1])


def cmd_profile_decode(args: argparse.Namespace) -> int:
    """Median ms per frame by batch size, and the figure to put under the hardware's decode_ms_per_mpixel:
    the largest batch's (workers decode a batch's frames together)."""
    from harpagon.profiler import profile_decode

    batches = args.batches or [1, 8]
    shape = tuple(args.input_size or (3, 224, 224))
    if len(shape) != 3 or shape[0] != 3:
        print(f"harpagon profile: --input-size must be 3,H,W with --decode, got {list(shape)}", file=sys.stderr)
        return EXIT_INVALID
    (h, w), mp = args.frame, args.frame[0] * args.frame[1] / 1e6
    with progress_bar(f"decode {h}x{w} {args.encoding} on {args.device}", len(batches) * args.repeats) as advance:
        times = profile_decode(args.device, h, w, args.encoding, batches, shape, args.repeats, args.warmup,
                               args.threads, advance)
    for b, ms in zip(batches, times, strict=True):
        print(f"{h}x{w} {args.encoding} to {list(shape)} on {args.device}, batch {b}: {ms:.3f} ms per frame, "
              f"{ms / mp:.3f} ms per megapixel")
    print(f"decode_ms_per_mpixel: {{{args.encoding}: {times[-1] / mp:.3g}}}  # batch {batches[-1]}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    if args.decode:
        return cmd_profile_decode(args)
    missing = [flag for flag, value in (("--model", args.model), ("--batches", args.batches), ("--out", args.out))
               if value is None]
    if missing:
        print(f"harpagon profile: {', '.join(missing)} required (or --decode)", file=sys.stderr)
        return EXIT_INVALID
    from harpagon.profiler import memory_label, profile, write_profiles
    from harpagon.runtime.wire.errors import RuntimeFault
    from harpagon.runtime.worker.registry import entries

    runnable = sorted(name for name, e in entries().items() if e.arch is not None)
    if args.model not in runnable:
        print(f"harpagon profile: --model {args.model!r} is not a runnable model of the registry "
              f"({', '.join(runnable)})", file=sys.stderr)
        return EXIT_INVALID
    if args.input_size is not None and len(args.input_size) != 3:
        print(f"harpagon profile: --input-size must be C,H,W, got {args.input_size}", file=sys.stderr)
        return EXIT_INVALID
    command = (f"harpagon profile --model {args.model} --device {args.device} "
               f"--batches {','.join(map(str, args.batches))} --repeats {args.repeats} --warmup {args.warmup}"
               + (f" --input-size {','.join(map(str, args.input_size))}" if args.input_size else "")
               + (f" --threads {args.threads}" if args.threads else "") + f" --out {args.out}")
    with progress_bar(f"profile {args.model} on {args.device}", len(args.batches) * args.repeats) as advance:
        try:
            hardware, rows = profile(args.model, args.device, args.batches, args.input_size, args.repeats,
                                     args.warmup, args.threads, args.hardware, advance, memory=True)
        except RuntimeFault as exc:
            print(f"harpagon profile: {exc}", file=sys.stderr)
            return EXIT_INVALID
    label = memory_label(args.device)
    write_profiles(args.out, args.model, hardware, rows, command, label)
    for b, mean, std, *mb in rows:
        memory = f", {mb[0]:.1f} MiB" if mb else ", memory not measured"
        print(f"{args.model} on {hardware}: batch {b}: {mean:.3f} ± {std:.3f} ms{memory}")
    print(f"memory: {label}")
    print(f"written: {args.out}")
    return 0
