"""muvera-python's ``Muvera`` encoder over simkern's FDE kernels: ``from simkern.compat.muvera import Muvera``.

``Muvera(num_repetitions=20, num_simhash_projections=5, dimension=16, projection_type="identity",
projection_dimension=None, fill_empty_partitions=True, final_projection_dimension=None, seed=42)`` takes the
arguments of muvera-python 0.2.0's class (same defaults, same ValueError messages), has its attributes
(``output_dimension``, the repr) and its ``encode_documents`` / ``encode_queries``: one ``(N, dimension)`` array
gives a 1-D ``(output_dimension,)`` encoding, a list of them a 2-D ``(len, output_dimension)`` array (an empty list
``(0, output_dimension)``), with muvera's ValueError messages for wrong shapes.

The encodings are muvera-python's for the same configuration and seed, so indexes built with it stay valid: the
random matrices are drawn with NumPy exactly as its helper draws them (repetition r: ``default_rng(seed + r)``'s
``normal`` ``(dimension, k)`` cast to float32 for SimHash, a fresh ``default_rng(seed + r)``'s ``integers`` then
``choice`` for the AMS projection; ``default_rng(seed)`` for the final CountSketch) and handed to
``simkern.FDE.from_matrices`` with muvera's rule for filling empty partitions (``fill_target="gray_decoded"``: the
token whose sign string is nearest to the Gray *decoding* of the partition index, lowest token on ties, where
Google's reference uses the sign string of the partition; only with k >= 3 does it matter). Documents average,
queries sum, empty partitions are filled only for non-empty documents with k > 0, empty point clouds encode to
zeros, and the final CountSketch adds in index order, all as muvera does. The matrices are drawn at the first
encode (as muvera draws them at each call: a bad seed raises NumPy's error there too) and kept until an attribute
changes.

Differences from muvera-python 0.2.0, each deliberate:

- Values: with ``projection_type="identity"`` the encodings are equal bit for bit (the same float32 sums in the
  same order). With ``"ams_sketch"`` each projected coordinate is summed over the input coordinates in order,
  where muvera multiplies by the dense AMS matrix in BLAS's order, so values agree to float32 rounding (relative
  about ``(dimension + tokens) * 2**-24`` of the sums of magnitudes). SimHash sketches are fused multiply-adds in
  coordinate order where muvera calls BLAS: a sketch within a few float32 roundings of zero can take the other sign
  and its token another partition (rare: the tests keep generated sketches clear of zero to compare partitions
  exactly).
- NaN or infinity in a point cloud raises ValueError naming the set and token (``documents[2] has a NaN or
  infinite value (token 5)``); muvera encodes them (NaN sketches compare false; NaN spreads into the encoding),
  which hides corrupt embeddings. Finite tokens whose float32 sums overflow raise ValueError too, where muvera
  returns inf / NaN.
- ``dimension`` < 1, and configurations with ``num_repetitions * 2**num_simhash_projections * projection
  dimension`` >= 2**31, raise ValueError at the first encode (muvera returns empty encodings for ``dimension=0``
  and fails allocating, MemoryError, for the others).
- Encoding runs on simkern's thread pool (``simkern.set_num_threads``; results do not depend on the thread
  count); muvera runs its Rust loops on one thread and its matrix products on BLAS's threads.
- Changing an attribute after construction re-draws the matrices for the new values at the next encode; muvera
  fixes its sizes at construction and reads the rest at each call, so only ``seed``, ``fill_empty_partitions``
  and ``final_projection_dimension`` changes work there (where both agree).

Not differences: non-float32 input is converted as muvera converts it (a single array straight to float32; a
batch to the common dtype of its arrays, as ``numpy.vstack`` does, then float32); inputs without ``.ndim``
raise AttributeError, as there; seeds may be any non-negative int.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..fde import FDE

__all__ = ["Muvera"]

_SIGNS = np.array([-1.0, 1.0], dtype=np.float32)


class Muvera:
    """Encoder of multi-vector embeddings (point clouds) into Fixed Dimensional Encodings, muvera-python's API.

    ``num_repetitions`` (> 0), ``num_simhash_projections`` (k in [0, 31); 2**k partitions), ``dimension`` of the
    input vectors, ``projection_type`` ``"identity"`` or ``"ams_sketch"`` (to ``projection_dimension`` > 0
    coordinates), ``fill_empty_partitions`` (documents), ``final_projection_dimension`` (None or <= 0: no final
    CountSketch), ``seed``. ``output_dimension`` = final_projection_dimension if > 0, else
    ``num_repetitions * 2**k * projection dimension``. See the module docstring for the (few) differences.
    """

    def __init__(
        self,
        num_repetitions: int = 20,
        num_simhash_projections: int = 5,
        dimension: int = 16,
        projection_type: Literal["identity", "ams_sketch"] = "identity",
        projection_dimension: int | None = None,
        fill_empty_partitions: bool = True,
        final_projection_dimension: int | None = None,
        seed: int = 42,
    ) -> None:
        if num_repetitions <= 0:
            raise ValueError(f"num_repetitions must be greater than 0, got {num_repetitions}")
        if not (0 <= num_simhash_projections < 31):
            raise ValueError(
                f"num_simhash_projections must be in [0, 31), got {num_simhash_projections}"
            )
        if projection_type not in ("identity", "ams_sketch"):
            raise ValueError(
                f"projection_type must be 'identity' or 'ams_sketch', got '{projection_type}'"
            )
        if projection_type == "ams_sketch" and (projection_dimension is None or projection_dimension <= 0):
            raise ValueError(
                "A positive projection_dimension is required when projection_type='ams_sketch'"
            )
        self.num_repetitions = num_repetitions
        self.num_simhash_projections = num_simhash_projections
        self.dimension = dimension
        self.projection_type = projection_type
        self.projection_dimension = projection_dimension
        self.fill_empty_partitions = fill_empty_partitions
        self.final_projection_dimension = final_projection_dimension
        self.seed = seed
        # muvera's derived constants (fixed at construction there too)
        self._num_partitions: int = 2**num_simhash_projections
        self._use_identity: bool = projection_type == "identity"
        self._proj_dim: int = dimension if self._use_identity else projection_dimension  # type: ignore[assignment]
        self._fde_dim: int = num_repetitions * self._num_partitions * self._proj_dim
        self._cache: tuple[tuple[Any, ...], FDE] | None = None  # (attributes, encoder): built at the first encode

    @property
    def output_dimension(self) -> int:
        """Dimension of the encoded output vector."""
        if self.final_projection_dimension is not None and self.final_projection_dimension > 0:
            return self.final_projection_dimension
        return self._fde_dim

    # -- encoding ----------------------------------------------------------------------------------------------
    def encode_documents(self, documents: npt.NDArray[Any] | list[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        """Documents (averages per partition; empty partitions filled with the nearest token when
        ``fill_empty_partitions``): one ``(N, dimension)`` array -> ``(output_dimension,)``; a list of them ->
        ``(len, output_dimension)``."""
        if isinstance(documents, list):
            return self._encode_batch(documents, is_query=False)
        return self._encode_single(documents, is_query=False)

    def encode_queries(self, queries: npt.NDArray[Any] | list[npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        """Queries (sums per partition, nothing filled): one ``(N, dimension)`` array -> ``(output_dimension,)``;
        a list of them -> ``(len, output_dimension)``."""
        if isinstance(queries, list):
            return self._encode_batch(queries, is_query=True)
        return self._encode_single(queries, is_query=True)

    def _encode_single(self, point_cloud: npt.NDArray[Any], *, is_query: bool) -> npt.NDArray[np.float32]:
        if point_cloud.ndim != 2 or point_cloud.shape[1] != self.dimension:
            raise ValueError(f"Expected shape (N, {self.dimension}), got {point_cloud.shape}")
        x = np.ascontiguousarray(point_cloud, dtype=np.float32)
        row: npt.NDArray[np.float32] = self._run([x], is_query)[0]
        return row

    def _encode_batch(self, point_clouds: list[npt.NDArray[Any]], *, is_query: bool) -> npt.NDArray[np.float32]:
        if len(point_clouds) == 0:
            return np.zeros((0, self.output_dimension), dtype=np.float32)
        for i, pc in enumerate(point_clouds):
            if pc.ndim != 2 or pc.shape[1] != self.dimension:
                raise ValueError(f"Element {i}: expected (N, {self.dimension}), got {pc.shape}")
        # muvera stacks the batch (numpy.vstack: the common dtype) and then converts to float32
        common = np.result_type(*point_clouds)
        arrays = [np.ascontiguousarray(np.asarray(pc, dtype=common), dtype=np.float32) for pc in point_clouds]
        return self._run(arrays, is_query)

    def _run(self, arrays: list[npt.NDArray[np.float32]], is_query: bool) -> npt.NDArray[np.float32]:
        fde = self._encoder()
        if is_query:
            return fde.encode_queries(arrays)
        return fde.encode_documents(arrays, empty="zeros")

    def _encoder(self) -> FDE:
        """The FDE over muvera's matrices for the current attributes (drawn at the first call, again after a
        change)."""
        key = (self.num_repetitions, self.num_simhash_projections, self.dimension, self.projection_type,
               self.projection_dimension, self.fill_empty_partitions, self.final_projection_dimension, self.seed)
        cache = self._cache  # one read: another thread may replace it (with an equal encoder)
        if cache is None or cache[0] != key:
            cache = (key, self._draw())
            self._cache = cache
        return cache[1]

    def _draw(self) -> FDE:
        """muvera's matrices (its helper's calls, in its order) as an FDE: per repetition ``default_rng(seed + r)``
        for the SimHash matrix and a fresh one for the AMS matrix; ``default_rng(seed)`` for the final sketch."""
        reps, k, dim = self.num_repetitions, self.num_simhash_projections, self.dimension
        identity = self.projection_type == "identity"
        proj_dim = dim if identity else self.projection_dimension
        if dim < 1:
            raise ValueError(f"dimension must be greater than 0, got {dim}")
        inner = reps * 2**k * proj_dim  # proj_dim: an int (checked in __init__)
        if inner >= 2**31:
            raise ValueError(f"num_repetitions * 2**num_simhash_projections * projection dimension must be < 2**31, "
                             f"got {inner}")
        simhash = []
        index, sign = [], []
        for rep in range(reps):
            current_seed = self.seed + rep
            rng = np.random.default_rng(current_seed)
            simhash.append(rng.normal(loc=0.0, scale=1.0, size=(dim, k)).astype(np.float32))
            if not identity:
                rng = np.random.default_rng(current_seed)
                index.append(rng.integers(0, proj_dim, size=dim))
                sign.append(rng.choice(_SIGNS, size=dim))
        final = self.final_projection_dimension
        final_projection = None
        if final is not None and final > 0:
            rng = np.random.default_rng(self.seed)
            final_projection = (rng.integers(0, final, size=inner), rng.choice(_SIGNS, size=inner))
        else:
            final = None
        return FDE.from_matrices(
            np.stack(simhash), projection=None if identity else (np.stack(index), np.stack(sign)),
            projection_dimension=None if identity else proj_dim, final_projection=final_projection,
            final_projection_dimension=final, fill_empty_partitions=bool(self.fill_empty_partitions),
            fill_target="gray_decoded")

    # -- pickling: muvera's attributes only (the matrices are drawn again) -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = None

    def __repr__(self) -> str:
        return (
            f"Muvera("
            f"num_repetitions={self.num_repetitions}, "
            f"num_simhash_projections={self.num_simhash_projections}, "
            f"dimension={self.dimension}, "
            f"projection_type='{self.projection_type}', "
            f"projection_dimension={self.projection_dimension}, "
            f"fill_empty_partitions={self.fill_empty_partitions}, "
            f"final_projection_dimension={self.final_projection_dimension}, "
            f"seed={self.seed}"
            f")"
        )
