"""Whether the models a plan puts on one GPU fit in its memory (docs/model.md, "Inputs: memory").

A model at batch `b` holds its profile row's `memory_mb` (weights, activations, workspace). The
models of one GPU fit when their sum stays within the GPU's usable memory: its spec-sheet
`memory_gb`, less a share the driver keeps and a fixed reserve for what no row counts. When the
hardware's memory or any member's row is unknown the rule cannot be applied: `fits` says yes and
`known` says that nothing was checked, so that callers can say so rather than refuse.
"""

from __future__ import annotations

from collections.abc import Sequence

from harpagon.config.schema import Workload

RESERVE_MB = 1024.0
"""Per GPU, MiB: the CUDA context (with the cuDNN and cuBLAS kernels loaded, several hundred MiB)
and the caching allocator's slack (blocks reserved but not allocated, which the profiler's
`max_memory_allocated` leaves out). Counted once per GPU, not per model."""

RESERVE_FRACTION = 0.05
"""Share of the spec-sheet memory a program never gets: the driver's and ECC's (nvidia-smi shows
about 15 of a T4's 16 GiB) and fragmentation that grows with the memory in use."""

Members = Sequence[tuple[str, int]]
"""The models on one GPU, as `(model, batch)`; a model served twice is listed twice."""


def usable_mb(workload: Workload, hardware: str) -> float | None:
    """What the models of one GPU of `hardware` may hold together, MiB; None: its memory is unknown."""
    h = workload.hardware_by_name.get(hardware)
    if h is None or h.memory_gb is None:
        return None
    return h.memory_gb * 1024.0 * (1.0 - RESERVE_FRACTION) - RESERVE_MB


def usage_mb(workload: Workload, model: str, hardware: str, batch: int) -> float | None:
    """The model's memory at `batch` on `hardware` (its profile row's), MiB; None: not stated."""
    row = workload.profile_rows.get((model, hardware), {}).get(batch)
    return None if row is None else row.memory_mb


def free_mb(workload: Workload, hardware: str, members: Members) -> float | None:
    """Usable memory left once the members are loaded, MiB (negative: over); None when not `known`."""
    usable = usable_mb(workload, hardware)
    used = [usage_mb(workload, m, hardware, b) for m, b in members]
    if usable is None or any(u is None for u in used):
        return None
    return usable - sum(u for u in used if u is not None)


def known(workload: Workload, hardware: str, members: Members) -> bool:
    """Whether `fits` could apply the rule: the hardware's memory and every member's usage are stated."""
    return free_mb(workload, hardware, members) is not None


def fits(workload: Workload, hardware: str, members: Members) -> bool:
    """The members fit on one GPU of `hardware`; True when that cannot be told (see `known`)."""
    free = free_mb(workload, hardware, members)
    return free is None or free >= -1e-6  # a byte's slack for the rounding of sums


def describe(workload: Workload, hardware: str, members: Members) -> str:
    """One line for messages: each member's memory, their sum and the GPU's usable memory."""
    parts = []
    for m, b in members:
        mb = usage_mb(workload, m, hardware, b)
        parts.append(f"{m} b={b} {'unknown' if mb is None else f'{mb:.0f}'} MiB")
    used = sum(usage_mb(workload, m, hardware, b) or 0.0 for m, b in members)
    usable = usable_mb(workload, hardware)
    if usable is None:
        return f"{' + '.join(parts)}; not checked: {hardware!r} has no memory_gb"
    if not known(workload, hardware, members):
        return f"{' + '.join(parts)}; not checked: a row states no memory_mb"
    h = workload.hardware_by_name[hardware]
    return (f"{' + '.join(parts)} = {used:.0f} MiB of {usable:.0f} MiB usable on {hardware!r} "
            f"({h.memory_gb:g} GiB less {RESERVE_FRACTION:.0%} and a {RESERVE_MB:.0f} MiB reserve)")
