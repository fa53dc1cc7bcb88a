"""`harpagon profile`: measure a model's latency per batch size on a device."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, int_list, positive_int


def add_parser(sub) -> None:
    """`harpagon profile`."""
    pr = sub.add_parser("profile", help="measure a model's latency per batch size on a device",
                        description="Measure mean and std latency per batch size and write them as a "
                                    "`profiles` entry the planner reads.")
    pr.add_argument("--model", required=True, help="model registry name (models/registry.yaml)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    pr.add_argument("--batches", required=True, type=int_list, help="batch sizes, e.g. 1,2,4,8")
    pr.add_argument("--input-size", type=int_list, default=None, help="one item's shape C,H,W (default: registry)")
    pr.add_argument("--repeats", type=positive_int, default=20, help="timed runs per batch size (default 20)")
    pr.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    pr.add_argument("--hardware", default=None, help="hardware name to record (default: from the device)")
    pr.add_argument("--threads", type=positive_int, default=None, help="torch threads on cpu (default: all cores)")
    pr.add_argument("--out", required=True, type=Path, help="profiles YAML to write or update")
    pr.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    with Progress(TextColumn(f"profile {args.model} on {args.device}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task("runs", total=len(args.batches) * args.repeats)
        try:
            hardware, rows = profile(args.model, args.device, args.batches, args.input_size, args.repeats,
                                     args.warmup, args.threads, args.hardware, lambda n: bar.advance(task, n),
                                     memory=True)
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
