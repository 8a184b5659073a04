"""A restricted unpickler: the second line of defence behind the sha256 check of every pickle.

It resolves only what the pipeline's own pickles contain: builtin containers,
NumPy arrays, dtypes and scalars, and pandas data structures (frames, series,
indexes, arrays, dtypes and the private helpers pandas pickles them with). Any
other global, ``os.system``, ``builtins.eval`` or ``pandas.read_csv`` among
them, is refused before it is called, so a tampered pickle cannot run code.
"""
from __future__ import annotations

import io
import pickle
from typing import Any

BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "slice", "complex", "bytearray", "range"})
NUMPY = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),  # NumPy < 2
})
# pandas modules whose classes, and whose pickle helpers, may be resolved.
PANDAS_MODULES = ("pandas._libs.", "pandas.core.indexes.", "pandas.core.internals.", "pandas.core.arrays.",
                  "pandas.core.dtypes.")
PANDAS_CLASS_MODULES = frozenset({"pandas", "pandas.arrays", "pandas.core.frame", "pandas.core.series"})
PANDAS_HELPER_PREFIXES = ("_unpickle", "__pyx_unpickle", "_new_", "new_block")


class ForbiddenPickleError(pickle.UnpicklingError):
    """The pickle names a global that is not plain data."""


def _allowed(module: str, name: str, obj: Any) -> bool:
    if module == "builtins":
        return name in BUILTINS
    if module.startswith("numpy"):
        return (module, name) in NUMPY or (module == "numpy.dtypes" and isinstance(obj, type))
    if module in PANDAS_CLASS_MODULES:
        return isinstance(obj, type)  # classes only: pandas.read_pickle, pandas.eval ... are functions
    if module.startswith(PANDAS_MODULES):
        return isinstance(obj, type) or name.startswith(PANDAS_HELPER_PREFIXES)
    return False


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain data only; raises :class:`ForbiddenPickleError` on anything else."""

    def find_class(self, module: str, name: str) -> Any:
        if not (module == "builtins" or module.split(".")[0] in ("numpy", "pandas")):
            raise ForbiddenPickleError(f"the pickle asks for {module}.{name}, which is not plain data")
        obj = super().find_class(module, name)  # imports only numpy/pandas submodules
        if not _allowed(module, name, obj):
            raise ForbiddenPickleError(f"the pickle asks for {module}.{name}, which is not plain data")
        return obj


def loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()
