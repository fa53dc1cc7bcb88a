"""Layer 3: dispatch policies as pure state machines with an injected clock.

The same code runs in the simulator (virtual clock) and in the live frontend (real clock), so what
the simulator predicts is what the frontend does. Times are in milliseconds.
"""

from harpagon.dispatch.batcher import Batch, BatchCollector
from harpagon.dispatch.module import ModuleDispatcher, TupleSpec
from harpagon.dispatch.wrr import SmoothWRR

__all__ = ["Batch", "BatchCollector", "ModuleDispatcher", "SmoothWRR", "TupleSpec"]
