"""Process lifecycle shared by the long-running commands."""

from __future__ import annotations

import asyncio
import signal


async def until_stopped() -> None:
    """Return on SIGINT or SIGTERM (then the caller drains and stops)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
