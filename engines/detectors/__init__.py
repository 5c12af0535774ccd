"""Face detector adapters: pre/post-processing around a backend (RetinaFace, SCRFD).

``retinaface_net`` holds the PyTorch network and needs torch; nothing else here does.
"""
