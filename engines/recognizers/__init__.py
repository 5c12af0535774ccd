"""Face recognisers: the ArcFace adapter (pre/post-processing, no torch) and the networks as PyTorch modules.

``arcface`` runs on any backend; ``mobilefacenet`` and ``iresnet`` import torch and are loaded only by
the PyTorch backend, so importing this package never pulls torch in.
"""
