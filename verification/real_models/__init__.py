"""The real models (all-MiniLM-L6-v2, SmolLM2-135M): the validation of their forward passes against golden values."""
