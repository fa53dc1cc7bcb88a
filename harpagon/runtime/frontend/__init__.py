"""The frontend: Triton-protocol (KServe v2) gRPC server over a data plane that runs app DAGs."""
