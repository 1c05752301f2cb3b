"""Real pretrained models: the MiniLM and SmolLM2 loaders and the checks run on their attention layers."""
