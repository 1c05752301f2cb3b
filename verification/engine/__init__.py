"""The engine: running checks, mutants, searches and sweeps, and the run journal behind ``--resume``."""
