"""The leaf of the suite: the check model, the registry, the extension protocol, errors and exit statuses,
process identity, tolerances, the false-alarm budget, PRNG keys and atomic outputs. It imports nothing else
from ``verification``."""
