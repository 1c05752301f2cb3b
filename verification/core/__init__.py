"""The leaf of the verification package: the check model, errors, tolerances (nothing here imports above it)."""
