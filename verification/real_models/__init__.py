"""Real pretrained models: the MiniLM and SmolLM2 loaders, the validation of their forward passes against
golden values, and the checks run on their attention layers."""
