"""The wire layer: the contracts the controller, the frontend and the workers share.

Routing tables and their codec, module specs and their codec, tensors, status errors, gRPC server
and channel helpers, and the worker-client interface the controller and the frontend are given (a
gRPC one in production, fakes in unit tests). Nothing here imports the three components above it.
"""
