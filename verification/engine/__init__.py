"""The engine: the runner and self-test, plugin discovery, the distributed map, the certify and search drivers, and
the run journal behind ``--resume``."""
