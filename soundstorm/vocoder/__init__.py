"""FARGAN, Opus 1.5's pretrained neural vocoder, and its LPCNet features.

`build.py` obtains the Opus 1.5.2 release tarball (sha256-checked), compiles the few files the vocoder
needs beside our bridge `fargan_shim.c` into a shared library in the user's data folder, and `fargan.py`
drives it through ctypes with numpy arrays in and out. No Opus source lives in this repository.
"""
