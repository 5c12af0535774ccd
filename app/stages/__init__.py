"""The pipeline's stages as plain objects: arrays in, dataclasses out. The runtime wraps them in processes."""
