"""MUVERA Fixed Dimensional Encodings (FDE): one vector per multi-vector set, whose inner products approximate
Chamfer / MaxSim similarity, so that single-vector indexes (HNSW, PQ) can retrieve multi-vector candidates.

``FDE`` reproduces Google's reference implementation (google/graph-mining,
``sketching/point_cloud/fixed_dimensional_encoding.cc``) for the same configuration and seed: SimHash partitions
with Gaussian hyperplanes seeded ``seed + r`` per repetition and Gray-code partition ids, the reference's "AMS"
projection (one +-1 per input coordinate, unscaled) or the identity, sums per partition for queries and averages
for documents, empty document partitions filled with the token of nearest sign string, and an optional final
CountSketch seeded with ``seed``. Output layout: repetition, partition, coordinate. With the identity projection
the output equals the reference's bit for bit; with the AMS projection within one float32 rounding per sum (the
reference evaluates the projection as a dense matrix product; we scatter, coordinates in order). The random
matrices are drawn by hand from mt19937 words exactly as libstdc++ draws them, so they do not depend on the C++
library this package was built with; the Gaussians use the C library's ``logf`` (glibc's equals the reference's).

Differences from the reference, by design: a batch API (Ragged / list / 2-D / 3-D inputs, threads split
the point clouds; results do not depend on batch size, threads or ISA); ``fill_empty_partitions`` applies to
documents only (queries ignore it instead of failing); an empty document raises ``ValueError`` (the reference
returns NaN or reads out of bounds) unless ``empty="zeros"``; an empty query encodes to zeros (the reference's
sum of nothing). Input tokens must be float32 and finite; an encoding that overflows float32 (huge finite tokens)
raises ValueError naming the argument instead of returning inf/NaN.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from . import _core
from ._enums import FDE_EMPTY, FDE_PROJECTIONS, choice
from ._validate import check_out_aligned, int_arg, seed_arg, threads_arg
from .ragged import Ragged, RaggedLike, aligned_tokens, as_ragged

__all__ = ["FDE"]


class _Config(TypedDict):
    """FDE.config: the keyword arguments of ``FDE(**config)``."""

    dim: int
    num_repetitions: int
    num_simhash_projections: int
    projection: str
    projection_dimension: int | None
    fill_empty_partitions: bool
    final_projection_dimension: int | None
    seed: int


class FDE:
    """Fixed Dimensional Encoder for multi-vector sets of ``dim``-dimensional tokens.

    ``num_repetitions`` R, ``num_simhash_projections`` k (0..30; 2**k partitions per repetition),
    ``projection`` ``"ams_sketch"`` (to ``projection_dimension`` coordinates) or ``"identity"`` (then
    ``projection_dimension`` must be None or ``dim``), ``fill_empty_partitions`` (documents), optional
    ``final_projection_dimension`` (a CountSketch of the R * 2**k * d_proj vector), ``seed`` (in [0, 2**32): the
    reference's 32-bit seed; its negative seeds s are s + 2**32 here, the same bits). ``output_dim`` =
    final_projection_dimension or R * 2**k * d_proj.
    """

    def __init__(self, dim: int, *, num_repetitions: int = 20, num_simhash_projections: int = 5,
                 projection: str = "ams_sketch", projection_dimension: int | None = 16,
                 fill_empty_partitions: bool = True, final_projection_dimension: int | None = None, seed: int = 1
                 ) -> None:
        dim = int_arg(dim, "dim", 1)
        num_repetitions = int_arg(num_repetitions, "num_repetitions", 1)
        num_simhash_projections = int_arg(num_simhash_projections, "num_simhash_projections", 0, 30)
        projection = choice(projection, "projection", FDE_PROJECTIONS)
        if projection == "identity":
            if projection_dimension is not None and projection_dimension != dim:
                raise ValueError(f"projection_dimension must be None or dim ({dim}) with the identity projection, "
                                 f"got {projection_dimension}")
            d_proj = dim
        else:
            if projection_dimension is None:
                raise ValueError("projection_dimension is required with projection='ams_sketch'")
            d_proj = int_arg(projection_dimension, "projection_dimension", 1)
        if not isinstance(fill_empty_partitions, (bool, np.bool_)):
            raise TypeError(f"fill_empty_partitions must be a bool, got {type(fill_empty_partitions).__name__}")
        if final_projection_dimension is not None:
            final_projection_dimension = int_arg(final_projection_dimension, "final_projection_dimension", 1)
        seed = seed_arg(seed, limit=2**32)
        self._config: _Config = {
            "dim": dim, "num_repetitions": num_repetitions, "num_simhash_projections": num_simhash_projections,
            "projection": projection, "projection_dimension": d_proj if projection == "ams_sketch" else None,
            "fill_empty_partitions": bool(fill_empty_partitions),
            "final_projection_dimension": final_projection_dimension, "seed": seed,
        }
        self._plan = _core._FDEPlan(dim, num_repetitions, num_simhash_projections, projection == "ams_sketch",
                                    d_proj, bool(fill_empty_partitions), final_projection_dimension or 0,
                                    seed)

    # -- properties --------------------------------------------------------------------------------------------
    @property
    def output_dim(self) -> int:
        return int(self._plan.output_dim)

    @property
    def config(self) -> dict[str, Any]:
        """The configuration (a copy), as accepted by ``FDE(**config)``."""
        return dict(self._config)

    @property
    def dim(self) -> int:
        return self._config["dim"]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "dim")
        return f"FDE({self.dim}, {args})"

    def __getstate__(self) -> dict[str, Any]:
        return self.config

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.__init__(state.pop("dim"), **_legacy_seed(state))  # type: ignore[misc]  # unpickling

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> FDE:
        """An encoder from a saved ``config`` (a pickle, a MultiVectorIndex folder), older seed conventions
        included."""
        return cls(**_legacy_seed(dict(config)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FDE) and other._config == self._config

    __hash__ = None  # type: ignore[assignment]  # unhashable (object declares __hash__ a method)

    # -- encoding ----------------------------------------------------------------------------------------------
    def encode_queries(self, x: RaggedLike, *, threads: int | None = None,
                       out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(n, output_dim)``: per repetition and partition, the sum of the projected tokens. An empty
        query encodes to zeros. ``out``: write into this float32 C-contiguous ``(n, output_dim)`` array (not
        overlapping the input) and return it; if a ValueError is raised for the values (NaN or infinity, or a
        float32 overflow of the sums), the contents of ``out`` are unspecified."""
        return self._encode(x, "queries", False, True, threads, out)

    def encode_documents(self, x: RaggedLike, *, threads: int | None = None, empty: str = "error",
                         out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """float32 ``(n, output_dim)``: per repetition and partition, the average of the projected tokens; empty
        partitions filled (``fill_empty_partitions``) with the token whose sign string is nearest. An empty
        document raises ``ValueError`` unless ``empty="zeros"`` (its row is then all zeros). ``out`` as in
        ``encode_queries``."""
        empty = choice(empty, "empty", FDE_EMPTY)
        return self._encode(x, "documents", True, empty == "zeros", threads, out)

    def _encode_checked(self, r: Ragged, documents: bool, core_threads: int) -> npt.NDArray[np.float32]:
        """Encode sets the caller checked (a Ragged of float32 C-contiguous aligned tokens of this dim, no empty
        document; finite), threads resolved: the internal path of composed calls (MultiVectorIndex), which
        validated them at its own boundary. The encoder still refuses a float32 overflow of the sums."""
        return self._plan.encode(r.tokens, r.offsets, documents, core_threads, None, "documents" if documents
                                 else "queries")

    def _encode(self, x: RaggedLike, name: str, documents: bool, allow_empty: bool, threads: int | None,
                out: npt.NDArray[np.float32] | None) -> npt.NDArray[np.float32]:
        threads = threads_arg(threads)
        check_out_aligned(out)
        if isinstance(x, (list, tuple)) and x:
            # A list of float32 C-contiguous (rows, dim) arrays is encoded where it lies (no concatenation), except
            # views at odd byte offsets (copied: the kernels load whole floats); any other list goes through Ragged
            # (which names what is wrong).
            if any(isinstance(a, np.ndarray) and not a.flags.aligned for a in x):
                x = [a.copy() if isinstance(a, np.ndarray) and not a.flags.aligned else a for a in x]
            rows = self._plan.encode_list(x, documents, allow_empty, threads, out, name)
            if rows is not None:
                return rows
        r = aligned_tokens(self._input(x, name))
        if documents and not allow_empty and len(r):
            lengths = np.diff(r.offsets)
            if (lengths == 0).any():
                i = int(np.flatnonzero(lengths == 0)[0])
                raise ValueError(f"{name}[{i}] is empty (0 tokens): an FDE of an empty document is undefined; "
                                 f"pass empty='zeros' to encode it as zeros")
        if out is not None and isinstance(out, np.ndarray) and np.may_share_memory(out, r.tokens):
            raise ValueError("out must not overlap the input tokens")
        if not len(r) and r.tokens.shape[1] != self.dim:  # e.g. a Ragged of 0 sets and another width
            return self._plan.encode(np.zeros((0, self.dim), np.float32), r.offsets, documents, threads, out, name)
        # NaN and infinities are found by the encoder (each set is checked just before it is encoded), and so is a
        # float32 overflow of the sums (each encoding is checked in cache as it is written).
        return self._plan.encode(r.tokens, r.offsets, documents, threads, out, name)

    def _input(self, x: RaggedLike, name: str) -> Ragged:
        if isinstance(x, (list, tuple)) and not x:
            return Ragged(np.zeros((0, self.dim), np.float32), np.zeros(1, np.int64))
        r = as_ragged(x, name)
        if r.dtype != np.float32:
            raise TypeError(f"{name} must be float32, got {r.dtype}; convert with .astype(numpy.float32)")
        if len(r) and r.dim != self.dim:
            raise ValueError(f"{name} must have dim {self.dim}, got {r.dim}")
        return r


def _legacy_seed(config: dict[str, Any]) -> dict[str, Any]:
    """Configurations saved before seeds were [0, 2**32) held the reference's int32: a negative seed s encodes
    exactly as s + 2**32 (the same 32 bits), so old pickles and saved indexes load unchanged."""
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and -(2**31) <= seed < 0:
        config = {**config, "seed": seed + 2**32}
    return config
