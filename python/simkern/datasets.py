"""Small datasets shipped inside the package (for the demo and examples; a few MB)."""

from __future__ import annotations

from importlib import resources
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from .ragged import Ragged

__all__ = ["load_demo_tokens"]


class DemoTokens(TypedDict):
    """What load_demo_tokens returns."""

    queries: Ragged
    docs: Ragged
    query_ids: npt.NDArray[Any]
    doc_ids: npt.NDArray[Any]


def load_demo_tokens() -> DemoTokens:
    """Ragged 128-d float16 token vectors: ``{"queries": Ragged (32 sets), "docs": Ragged (128 sets), ...}``.

    See ``simkern/data/README.md`` for where they come from.
    """
    with resources.files("simkern").joinpath("data/demo_tokens.npz").open("rb") as f:
        z = np.load(f)
        return {
            "queries": Ragged(z["query_tokens"], z["query_offsets"]),
            "docs": Ragged(z["doc_tokens"], z["doc_offsets"]),
            "query_ids": z["query_ids"],
            "doc_ids": z["doc_ids"],
        }
