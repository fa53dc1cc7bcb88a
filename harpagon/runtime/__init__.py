"""Layer 6: the live system (worker, frontend, controller) over the dispatch and planner layers.

Importing it sets gRPC core's log threshold (:func:`harpagon.runtime.wire.quiet_grpc_core`) first:
core reads it when `grpc` is imported, and the command modules import `grpc` before the wire layer.
"""

from harpagon.runtime.wire import quiet_grpc_core

quiet_grpc_core()
