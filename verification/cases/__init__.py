"""Case generation and batch numerics: Hypothesis strategies and exploration, the attention, shift and sup-gap batches."""
