"""Helpers shared by the notebooks: recording results for ``reproduce``, detecting Colab, where outputs go.

``python -m fgssl_lib.reproduce`` sets two environment variables for each notebook it runs:

- ``FGSSL_RESULTS``: the ``results.json`` that :func:`record` writes to (read back by the batch runner);
- ``FGSSL_OUTPUT``: the folder :func:`output_dir` returns, for figures and checkpoints.

Run interactively (Jupyter, Colab), neither is set: :func:`record` keeps the values in memory (see :func:`results`)
and :func:`output_dir` is ``outputs/`` beside the notebook.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_ENV = "FGSSL_RESULTS"
OUTPUT_ENV = "FGSSL_OUTPUT"

_memory: dict[str, Any] = {}


def to_json(value: Any) -> Any:
    """Convert ``value`` to plain JSON types.

    Accepts ``None``, bools, ints, floats, strings, mappings (keys become strings), lists / tuples, numpy scalars and
    arrays, torch tensors (0-d becomes a number, n-d a nested list) and pandas objects (a DataFrame becomes a list of
    row dicts). Non-finite floats become ``None`` because JSON has no NaN.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas.DataFrame
        return to_json(value.to_dict(orient="records"))
    if hasattr(value, "to_dict"):  # pandas.Series
        return to_json(value.to_dict())
    if hasattr(value, "tolist"):  # numpy scalars / arrays, torch tensors
        return to_json(value.detach().cpu().tolist() if hasattr(value, "detach") else value.tolist())
    raise TypeError(
        f"record() cannot store a {type(value).__name__}; pass numbers, strings, lists, dicts, numpy/torch values "
        "or a pandas DataFrame"
    )


def record(key: str, value: Any) -> None:
    """Store one result under ``key`` for ``reproduce``. It returns nothing, so a cell that ends with it shows no raw
    value: a notebook shows its numbers as a formatted table or line.

    The value is converted with :func:`to_json`. With ``$FGSSL_RESULTS`` set, the JSON file is rewritten at once
    (so a notebook that fails later keeps what it recorded); otherwise the value is kept in memory.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"record() needs a non-empty string key, got {key!r}")
    converted = to_json(value)
    path = os.environ.get(RESULTS_ENV)
    if path:
        target = Path(path)
        stored = json.loads(target.read_text()) if target.exists() else {}
        stored[key] = converted
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    else:
        _memory[key] = converted


def results() -> dict[str, Any]:
    """Everything recorded so far in this process: the ``$FGSSL_RESULTS`` file when set, else the in-memory store."""
    path = os.environ.get(RESULTS_ENV)
    if path:
        return json.loads(Path(path).read_text()) if Path(path).exists() else {}
    return dict(_memory)


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules


def output_dir() -> Path:
    """The folder for a notebook's figures and checkpoints (``$FGSSL_OUTPUT``, else ``outputs/``), created if needed."""
    path = Path(os.environ.get(OUTPUT_ENV) or "outputs")
    path.mkdir(parents=True, exist_ok=True)
    return path
