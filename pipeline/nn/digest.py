"""A content hash of named arrays: how a model's parameters are identified bit for bit."""
from __future__ import annotations

import hashlib

import numpy as np


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    """Hex sha256 over named arrays (name, dtype, shape and bytes), order-independent."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        # the array's own memory, not arr.tobytes(): no transient copy (the training data is ~200 MB)
        digest.update(arr.reshape(-1).view(np.uint8))
    return digest.hexdigest()
