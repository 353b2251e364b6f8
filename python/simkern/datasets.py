"""Small datasets shipped inside the package (for the demo and examples; a few MB)."""

from __future__ import annotations

from importlib import resources

import numpy as np

from .ragged import Ragged

__all__ = ["load_demo_tokens"]


def load_demo_tokens() -> dict[str, object]:
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
