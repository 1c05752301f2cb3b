"""Trained-transformer experiments (I/O, plots, checkpoints) on top of the pure library ``iclkd_jax``.

Run them with ``iclkd experiment NAME [--quick] [--json PATH] [--out DIR]``; see
``docs/experiments.md`` for what each one measures and what it says about docs/statements.md.
"""
