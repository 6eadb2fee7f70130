"""The checks every served model applies to a request's tensors before any runtime sees them.

One rule for every model satwatch serves (the Python-based ``onnxruntime`` and ``pytorch``
backends, the Python models and, through them, the ensembles):

* **Not empty.** A tensor with a zero-length axis is refused. ONNX Runtime's CPU ``GRU``
  kernel aborts the whole process (``std::terminate``) on a zero-length sequence, which took
  a detector's backend stub down for good; nothing downstream needs an empty chunk.
* **Not huge.** At most :data:`MAX_STEPS` time steps (rows) and :data:`MAX_ELEMENTS` values
  per tensor; a longer series is sent in chunks, carrying the state.
* **Finite.** NaN/Inf policy: **refuse**. A float tensor holding a non-finite value is refused
  naming the tensor, the first bad row and how many values are bad; nothing is imputed, so
  the recurrent state a stream carries never absorbs made-up values. The one exception is
  ``post_state``, an opaque vector the postprocessing model writes itself (NaN there means
  "not yet"), which that model checks by its structure.

Each check raises :class:`~satwatch.exceptions.DataError`; the models turn it into that
request's ``INVALID_ARG`` error, and the other requests of the batch still answer.

Example::

    check_tensor("input_data", array)   # raises DataError naming what is wrong
"""

from __future__ import annotations

import numpy as np

from satwatch.exceptions import DataError

MAX_STEPS = 65_536
"""Most time steps (rows, the first axis) one request may carry per tensor."""

MAX_ELEMENTS = 4_194_304
"""Most values one tensor may carry (16 MiB of FP32): 65,536 steps of 64 features."""

OPAQUE_STATES = frozenset({"post_state"})
"""Inputs exempt from the finite rule: state vectors the server itself wrote."""

_SHOWN = 5  # bad rows named in a message before "and N more"


def check_size(name: str, array: np.ndarray) -> None:
    """Refuse an empty tensor, a zero-length axis, or one above the documented limits.

    Raises:
        DataError: Naming the tensor, what was expected and what came.
    """
    shape = tuple(array.shape)
    if array.size == 0:
        raise DataError(
            f"input {name!r}: expected at least one value on every axis, got shape "
            f"{list(shape)} (an empty tensor)"
        )
    if array.ndim and shape[0] > MAX_STEPS:
        raise DataError(
            f"input {name!r}: expected at most {MAX_STEPS} time steps per request (send the "
            f"series in chunks, passing the state back), got {shape[0]}"
        )
    if array.size > MAX_ELEMENTS:
        raise DataError(
            f"input {name!r}: expected at most {MAX_ELEMENTS} values per tensor, got "
            f"{array.size} (shape {list(shape)})"
        )


def check_finite(name: str, array: np.ndarray) -> None:
    """Refuse a float tensor holding NaN or Inf (policy: refuse), naming the first bad row.

    Non-float tensors pass unchanged.

    Raises:
        DataError: Naming the tensor, the count of bad values and the first bad rows.
    """
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    grid = bad.reshape(bad.shape[0] if bad.ndim else 1, -1)
    rows = np.flatnonzero(grid.any(axis=1))
    where = f"row(s) {_listed(rows)}"
    if bad.ndim == 2:
        where += f"; column(s) {_listed(np.flatnonzero(grid.any(axis=0)))}"
    raise DataError(
        f"input {name!r}: expected finite values (NaN/Inf policy 'refuse'), got "
        f"{int(bad.sum())} NaN/Inf value(s), first in row {int(rows[0])} ({where}); "
        "drop or fill those rows and resend"
    )


def _listed(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:_SHOWN])
    return shown + (f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else "")


def check_tensor(name: str, array: np.ndarray) -> None:
    """Apply every rule above to one input tensor.

    Raises:
        DataError: For the first rule it breaks.
    """
    check_size(name, array)
    if name not in OPAQUE_STATES:
        check_finite(name, array)
