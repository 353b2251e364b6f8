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

``FDE.from_matrices`` builds the same encoder over given matrices instead of seeded draws (another
implementation's, e.g. muvera-python's NumPy draws in ``simkern.compat.muvera``), with a choice of the sign string
empty partitions are filled from (muvera-python's differs from the reference's).
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from . import _core
from ._enums import FDE_EMPTY, FDE_FILL_TARGETS, FDE_PROJECTIONS, choice
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
    seed: int | None  # None: an encoder from from_matrices (whose config also holds "fill_target")


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
        self._explicit = False  # True: built by from_matrices (config["seed"] is None)

    @classmethod
    def from_matrices(cls, simhash: npt.ArrayLike, *, projection: Any = None,
                      projection_dimension: int | None = None, final_projection: Any = None,
                      final_projection_dimension: int | None = None, fill_empty_partitions: bool = True,
                      fill_target: str = "reference") -> FDE:
        """An encoder over given random matrices instead of matrices drawn from a seed, to reproduce another
        implementation's encodings (``simkern.compat.muvera`` passes muvera-python's NumPy draws). Encoding runs
        the same native path as ``FDE(...)`` (threads, batch inputs, ``empty=``, ``out=``), with the same sum
        orders: sketches and projections over the coordinates in order, tokens in order, the final sketch in
        index order.

        - ``simhash``: float32 ``(R, dim, k)``, finite: sketch j of repetition r of a token x is
          ``sum_i x[i] * simhash[r, i, j]``; R >= 1 repetitions, k in 0..30 SimHash bits (k = 0: one partition).
        - ``projection``: None (the identity; ``projection_dimension`` None or dim), or the AMS projection of each
          repetition (one +1 or -1 per input coordinate) in either form:

          - a dense ``(R, dim, d_proj)`` array of any real dtype whose rows ``[r, i, :]`` each hold exactly one
            nonzero, +1 or -1 (projected ``y[c] = sum_i x[i] * projection[r, i, c]``; ``projection_dimension``
            None or d_proj);
          - a pair ``(indices, signs)`` of ``(R, dim)`` arrays, integer indices in ``[0, projection_dimension)``
            and signs +1 or -1 of any real dtype (``y[indices[r, i]] += signs[r, i] * x[i]``);
            ``projection_dimension`` (d_proj) is then required.
        - ``final_projection``: None, or a CountSketch ``(indices, signs)`` of two 1-D arrays of length
          ``R * 2**k * d_proj`` (integer indices in ``[0, final_projection_dimension)``, signs +1 or -1):
          ``out[indices[i]] += signs[i] * inner[i]``; ``final_projection_dimension`` is then required.
        - ``fill_empty_partitions`` as in ``FDE``.
        - ``fill_target``: the sign string an empty document partition p is filled from (with the token whose
          sign string is nearest in Hamming distance, lowest token index on ties; hyperplane 0 = most
          significant bit): ``"reference"``, ``p ^ (p >> 1)``, the sign string whose partition is p (Google's
          reference, and ``FDE(...)``), or ``"gray_decoded"``, the Gray decoding of p (the prefix XOR of its bits
          from the top: muvera-python 0.2's rule). They agree for k <= 2.

        Wrong dtypes raise TypeError, wrong shapes or values ValueError, naming the argument; the arrays are
        copied. The encoder's ``config`` has ``seed`` None and a ``fill_target`` key (``FDE(**config)`` does not
        apply to it); it pickles with its matrices; ``==`` compares what two encoders compute (sizes, fill rule
        and matrices: one built from the matrices ``FDE(seed=s)`` draws equals it). A MultiVectorIndex holding
        one cannot be saved, pickled or copied (ValueError): its saved configuration holds a seed, not matrices.
        """
        sim = _matrix_arg(simhash, "simhash", 3, "float32")
        reps, dim, k = sim.shape
        if reps < 1 or dim < 1:
            raise ValueError(f"simhash must have shape (R, dim, k) with R >= 1 and dim >= 1, got {sim.shape}")
        if k > 30:
            raise ValueError(f"simhash must have at most 30 SimHash projections (k = shape[2]), got {k}")
        if not np.isfinite(sim).all():
            raise ValueError("simhash must be finite (it has a NaN or infinite value)")
        if not isinstance(fill_empty_partitions, (bool, np.bool_)):
            raise TypeError(f"fill_empty_partitions must be a bool, got {type(fill_empty_partitions).__name__}")
        fill_target = choice(fill_target, "fill_target", FDE_FILL_TARGETS)
        ams = projection is not None
        if ams:
            ams_index, ams_sign, d_proj = _projection_arg(projection, projection_dimension, reps, dim)
        else:
            if projection_dimension is not None and projection_dimension != dim:
                raise ValueError(f"projection_dimension must be None or dim ({dim}) with the identity projection "
                                 f"(projection=None), got {projection_dimension}")
            ams_index, ams_sign, d_proj = np.zeros((0, dim), np.int32), np.zeros((0, dim), np.float32), dim
        inner = reps * 2**k * d_proj  # < 2**31, as for FDE(...): checked by the plan (_FDEPlan's configure)
        if final_projection is None:
            if final_projection_dimension is not None:
                raise ValueError("final_projection_dimension is given without final_projection")
            final_index, final_sign, final_dim = np.zeros(0, np.int32), np.zeros(0, np.float32), 0
        else:
            if final_projection_dimension is None:
                raise ValueError("final_projection_dimension is required with final_projection")
            final_dim = int_arg(final_projection_dimension, "final_projection_dimension", 1)
            final_index, final_sign = _sketch_arg(final_projection, "final_projection", (inner,), final_dim,
                                                  "final_projection_dimension")
        self = cls.__new__(cls)
        self._config = {
            "dim": dim, "num_repetitions": reps, "num_simhash_projections": k,
            "projection": "ams_sketch" if ams else "identity", "projection_dimension": d_proj if ams else None,
            "fill_empty_partitions": bool(fill_empty_partitions),
            "final_projection_dimension": final_dim or None, "seed": None,
        }
        self._config["fill_target"] = fill_target  # type: ignore[typeddict-unknown-key]  # explicit matrices only
        self._plan = _core._FDEPlan.from_matrices(
            np.array(sim.transpose(1, 0, 2), order="C").reshape(dim, reps * k), reps, k, ams, ams_index, ams_sign,
            d_proj, bool(fill_empty_partitions), final_index, final_sign, final_dim, fill_target == "gray_decoded")
        self._explicit = True
        return self

    def _matrix_args(self) -> dict[str, Any]:
        """The keyword arguments of ``from_matrices`` that rebuild this encoder (from the plan's matrices, pair
        forms), for pickling and equality."""
        c, m = self._config, self._plan.matrices()
        reps, k, dim = c["num_repetitions"], c["num_simhash_projections"], c["dim"]
        args: dict[str, Any] = {
            "simhash": np.ascontiguousarray(m["simhash"].reshape(dim, reps, k).transpose(1, 0, 2)),
            "projection": None, "projection_dimension": c["projection_dimension"], "final_projection": None,
            "final_projection_dimension": c["final_projection_dimension"],
            "fill_empty_partitions": c["fill_empty_partitions"], "fill_target": c.get("fill_target", "reference"),
        }
        if c["projection"] == "ams_sketch":
            args["projection"] = (m["ams_index"], m["ams_sign"])
        if c["final_projection_dimension"]:
            args["final_projection"] = (m["final_index"], m["final_sign"])
        return args

    # -- properties --------------------------------------------------------------------------------------------
    @property
    def output_dim(self) -> int:
        return int(self._plan.output_dim)

    @property
    def config(self) -> dict[str, Any]:
        """The configuration (a copy), as accepted by ``FDE(**config)``; for an encoder from ``from_matrices``,
        ``seed`` is None and ``fill_target`` is added (it is rebuilt by pickling, not from its config)."""
        return dict(self._config)

    @property
    def dim(self) -> int:
        return self._config["dim"]

    def __repr__(self) -> str:
        if self._explicit:
            args = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "seed")
            return f"FDE.from_matrices({args})"
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "dim")
        return f"FDE({self.dim}, {args})"

    def __getstate__(self) -> dict[str, Any]:
        if self._explicit:  # the configuration and the matrices
            return self.config | {"matrices": self._matrix_args()}
        return self.config

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if "matrices" in state:  # unpickling an encoder from from_matrices
            self.__dict__.update(FDE.from_matrices(**state["matrices"]).__dict__)
            return
        self.__init__(state.pop("dim"), **_legacy_seed(state))  # type: ignore[misc]  # unpickling

    @classmethod
    def _from_config(cls, config: dict[str, Any]) -> FDE:
        """An encoder from a saved ``config`` (a pickle, a MultiVectorIndex folder), older seed conventions
        included."""
        return cls(**_legacy_seed(dict(config)))

    def __eq__(self, other: object) -> bool:
        """Whether both encode alike: the same configuration; where one is from ``from_matrices``, the same sizes,
        fill rule and matrices."""
        if not isinstance(other, FDE):
            return False
        if not (self._explicit or other._explicit):
            return other._config == self._config
        if self._structure() != other._structure():
            return False
        mine, theirs = self._plan.matrices(), other._plan.matrices()
        return all(np.array_equal(mine[key], theirs[key]) for key in mine)

    def _structure(self) -> dict[str, Any]:
        """The configuration without the seed, with the fill rule: what decides the encoding besides matrices."""
        structure: dict[str, Any] = {k: v for k, v in self._config.items() if k != "seed"}
        structure.setdefault("fill_target", "reference")
        return structure

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


def _matrix_arg(x: Any, name: str, ndim: int, kind: str) -> npt.NDArray[Any]:
    """``x`` as an array of ``ndim`` dimensions and the dtype kind ``kind``: "float32", "int" (any integer dtype) or
    "real" (any integer or floating dtype); TypeError / ValueError naming ``name``."""
    arr = np.asarray(x)
    if kind == "float32" and arr.dtype != np.float32:
        raise TypeError(f"{name} must be float32, got {arr.dtype}; convert with .astype(numpy.float32)")
    if kind == "int" and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got {arr.dtype}")
    if kind == "real" and arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an integer or floating-point array, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _sketch_arg(pair: Any, name: str, shape: tuple[int, ...], bound: int,
                bound_name: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """A CountSketch ``(indices, signs)``: two arrays of ``shape``, integer indices in [0, bound), signs +-1; as
    C-contiguous int32 / float32 copies."""
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair (indices, signs), got {type(pair).__name__}")
    index = _matrix_arg(pair[0], f"{name}[0] (indices)", len(shape), "int")
    sign = _matrix_arg(pair[1], f"{name}[1] (signs)", len(shape), "real")
    for arr, what in ((index, "indices"), (sign, "signs")):
        if arr.shape != shape:
            raise ValueError(f"{name} {what} must have shape {shape}, got {arr.shape}")
    bad = (index < 0) | (index >= bound)
    if bad.any():
        at = np.unravel_index(int(np.argmax(bad)), shape)
        raise ValueError(f"{name} indices must be in [0, {bound_name}) = [0, {bound}), got {index[at]} at "
                         f"{tuple(map(int, at))}")
    bad = (sign != 1) & (sign != -1)
    if bad.any():
        at = np.unravel_index(int(np.argmax(bad)), shape)
        raise ValueError(f"{name} signs must be +1 or -1, got {sign[at]} at {tuple(map(int, at))}")
    return np.array(index, np.int32, order="C"), np.array(sign, np.float32, order="C")  # aligned copies


def _projection_arg(projection: Any, projection_dimension: int | None, reps: int,
                    dim: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32], int]:
    """from_matrices' AMS ``projection`` (dense (R, dim, d_proj) or (indices, signs)) as (indices, signs, d_proj)."""
    if isinstance(projection, tuple):
        if projection_dimension is None:
            raise ValueError("projection_dimension is required with projection=(indices, signs)")
        d_proj = int_arg(projection_dimension, "projection_dimension", 1)
        index, sign = _sketch_arg(projection, "projection", (reps, dim), d_proj, "projection_dimension")
        return index, sign, d_proj
    dense = _matrix_arg(projection, "projection", 3, "real")
    if dense.shape[:2] != (reps, dim) or dense.shape[2] < 1:
        raise ValueError(f"projection must have shape (R, dim, d_proj) = ({reps}, {dim}, d_proj >= 1) like simhash, "
                         f"got {dense.shape}")
    d_proj = dense.shape[2]
    if projection_dimension is not None and projection_dimension != d_proj:
        raise ValueError(f"projection_dimension must be None or projection.shape[2] ({d_proj}), "
                         f"got {projection_dimension}")
    nonzero = dense != 0
    counts = nonzero.sum(axis=2)
    if (counts != 1).any():
        r, i = np.argwhere(counts != 1)[0]
        raise ValueError(f"projection[{r}, {i}] must hold exactly one nonzero value (+1 or -1), has {counts[r, i]}")
    index = np.argmax(nonzero, axis=2)
    sign = np.take_along_axis(dense, index[:, :, None], axis=2)[:, :, 0]
    bad = (sign != 1) & (sign != -1)
    if bad.any():
        r, i = np.argwhere(bad)[0]
        raise ValueError(f"projection[{r}, {i}] must hold +1 or -1, got {sign[r, i]}")
    return np.array(index, np.int32, order="C"), np.array(sign, np.float32, order="C"), d_proj


def _legacy_seed(config: dict[str, Any]) -> dict[str, Any]:
    """Configurations saved before seeds were [0, 2**32) held the reference's int32: a negative seed s encodes
    exactly as s + 2**32 (the same 32 bits), so old pickles and saved indexes load unchanged."""
    seed = config.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and -(2**31) <= seed < 0:
        config = {**config, "seed": seed + 2**32}
    return config
