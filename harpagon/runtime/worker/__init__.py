"""The per-GPU worker: loads modules from the model registry and runs their batches."""
