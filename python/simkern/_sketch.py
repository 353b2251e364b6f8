"""Randomized linear algebra: the fast Walsh-Hadamard transform, row sketches, sketched least squares.

    y = simkern.fwht(x)                     # H_n @ x along axis 0 (n a power of two), unnormalised
    y = simkern.fwht(x, axis=1, normalize=True)
    simkern.fwht(x, out=x)                  # in place
    sa = simkern.sketch(a, m, kind="srht")  # S @ a, (m, d): srht | gaussian | countsketch | sparse_sign
    res = simkern.lstsq_sketched(a, b)      # res.x, res.eps_bound, res.residual_norm, ...

``fwht`` computes the Sylvester-ordered Hadamard transform (``scipy.linalg.hadamard(n) @ x``) with log2(n)
butterfly passes in a fixed order, cache-blocked, SIMD along the other axes, multi-threaded (``threads=``); the
result is bit-identical for every thread count and ISA. float32 and float64 are computed in their own precision.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from . import _core
from ._enums import LSTSQ_METHODS, choice
from ._enums import SKETCH_KINDS as _SKETCH_KINDS
from ._validate import int_arg, into_out, out_array, seed_arg, threads_arg

__all__ = ["fwht", "sketch", "lstsq_sketched", "SketchedLstsqResult", "sketch_rows_rule", "SKETCH_KINDS"]

_Float = TypeVar("_Float", np.float32, np.float64)  # the dtypes of fwht and sketch: the result has the input's

SKETCH_KINDS = tuple(_SKETCH_KINDS)  # public: the kinds in code order
# The l_inf bound lstsq_sketched reports for m rows (docs/ARCHITECTURE.md, "Sketched least squares"):
#   eps(m) = sqrt(C ln(d / delta) d / m) / (1 - sqrt(d / m))^2
# the sqrt(d/m) law of the coordinate error of a dense sketch, divided by the square of the smallest singular value
# (1 - sqrt(d/m)) of a subspace embedding with m rows: for m >> d it is the rule m = C ln(d/delta) d / eps^2, and it
# grows as m approaches d, as the measured errors do on designs with rows of leverage ~1. C = 1 covers every
# measurement we made (100 seeds x {2, 4, 8, 16, 32} d x gauss / cauchy-rows / spike designs x d in {16, 64}: the
# largest C needed was 0.8).
_RULE_C = 1.0
_MAX_RULE_ROWS = 2.0**62  # sketch_rows_rule refuses an eps that needs more rows (eps ~1e-9 and below)


def fwht(x: npt.NDArray[_Float], *, axis: int = 0, normalize: bool = False, out: npt.NDArray[_Float] | None = None,
         threads: int | None = None) -> npt.NDArray[_Float]:
    """Walsh-Hadamard transform of ``x`` (float32 or float64) along ``axis`` (length a power of two).

    ``normalize=True`` scales by 1/sqrt(n) (the transform is then orthonormal and its own inverse). Returns a new
    array, or ``out`` (same shape and dtype as ``x``; ``out=x`` transforms in place). Non-finite values raise
    ValueError, as does a result that overflows the dtype (the contents of ``out`` are then unspecified)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an int in [{-x.ndim}, {x.ndim}), got {axis!r}")
    axis = int(axis) % x.ndim
    n = x.shape[axis]
    if n < 1 or n & (n - 1):
        raise ValueError(f"x.shape[{axis}] must be a power of two, got {n}")
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    threads = threads_arg(threads)
    if x.size and not np.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != x.dtype or out.shape != x.shape:
            raise ValueError(f"out must be a {x.dtype} array of shape {x.shape}")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
    kernel: Callable[[npt.NDArray[Any], bool, int], None] = (_core._fwht_f32 if x.dtype == np.float32
                                                             else _core._fwht_f64)
    rest = int(np.prod(x.shape[:axis] + x.shape[axis + 1:], dtype=np.int64))
    target = out if out is not None else np.empty_like(x, order="C")
    view = np.moveaxis(target, axis, 0)
    if view.flags.c_contiguous and view.flags.aligned:  # transform in the result's own memory
        if target is not x:
            np.copyto(target, x)
        if x.size:
            kernel(view.reshape(n, rest), bool(normalize), threads)
            _check_transform(view, "x")
        return target
    # One temporary (the axis first, C order, aligned): also for an out= view at an odd byte offset, since the
    # kernels load whole elements.
    work = np.moveaxis(x, axis, 0).copy(order="C")
    if x.size:
        kernel(work.reshape(n, rest), bool(normalize), threads)
        _check_transform(work, "x")
    np.copyto(view, work)
    return target


# _core._sketch_f32 / _core._sketch_f64 (a, b or None, m, kind code, seed, nnz, threads): the one of a's dtype
_SketchKernel: TypeAlias = (
    "Callable[[npt.NDArray[Any], npt.NDArray[Any] | None, int, int, int, int, int], npt.NDArray[Any]]"
)


def _check_transform(y: npt.NDArray[np.floating[Any]], name: str) -> None:
    """The input was finite: a non-finite output means the sums overflowed the dtype."""
    if not np.isfinite(y).all():
        raise ValueError(f"the transform of {name} overflowed {y.dtype}: the values of {name} are too large "
                         f"(the output grows up to n = {y.shape[0]} times the largest |value|); scale them down")


def _kind_arg(kind: str) -> int:
    return _SKETCH_KINDS[choice(kind, "kind", _SKETCH_KINDS)]


def _matrix_arg(a: npt.NDArray[Any], name: str, *, dtype: np.dtype[Any] | None = None) -> npt.NDArray[Any]:
    """a float32/float64 ndarray, 1-D or 2-D, non-empty; returned as is (any strides) unless misaligned."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if dtype is None and a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} must have the dtype of a ({dtype}), got {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {a.shape}")
    if a.shape[0] == 0 or (a.ndim == 2 and a.shape[1] == 0):
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if not a.flags.aligned:  # a view at an odd byte offset: the kernels load whole elements, so copy it once
        a = a.copy()
    return a


def _raise_non_finite(arrays: Sequence[tuple[str, npt.NDArray[Any]]], what: str) -> None:
    """Called when a sketch came out non-finite: name the input row that holds NaN/inf, else report overflow."""
    for name, arr in arrays:
        if arr is None:
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.argmax(bad.reshape(arr.shape[0], -1).any(axis=1)))
            raise ValueError(f"{name} contains NaN or inf (row {row})")
    raise ValueError(f"{what} overflowed {arrays[0][1].dtype}: the values of a (and b) are too large; scale them down")


def sketch(a: npt.NDArray[_Float], m: int, *, kind: str = "srht", seed: int = 0, nnz_per_column: int = 8,
           threads: int | None = None, out: npt.NDArray[_Float] | None = None) -> npt.NDArray[_Float]:
    """The row sketch ``S @ a`` of a tall ``(n, d)`` (or ``(n,)``) float32/float64 array: ``(m, d)`` (or ``(m,)``),
    same dtype, computed in that dtype.

    ``kind``:

    - ``"srht"`` (default): ``S = sqrt(1/m) P H D`` - random signs D, the unnormalised Hadamard transform H on n
      padded (implicitly, with zero rows) to the next power of two N, and m distinct rows of N drawn uniformly
      (``m <= N``). Only the m sampled rows are computed; ``a`` is read once, block by block, through its strides.
    - ``"gaussian"``: i.i.d. N(0, 1/m) entries (Box-Muller from counter hashes). Costs m n d multiply-adds.
    - ``"countsketch"``: one +-1 per column of S at a hashed row.
    - ``"sparse_sign"``: ``nnz_per_column`` nonzeros +-1/sqrt(nnz) per column, one in each of nnz_per_column row blocks
      (OSNAP-style; ``nnz_per_column <= m``).

    Every kind has E ||S x||^2 = ||x||^2. ``S`` depends only on ``(kind, n, m, seed, nnz_per_column)``: the result is
    bit-identical for every thread count and ISA. Sparse sketches are cheap but give no l_inf guarantee for least
    squares (see :func:`lstsq_sketched`). ``a`` is not copied whatever its strides (except a misaligned view, at
    an address that is not a multiple of its itemsize, copied once). NaN/inf in ``a`` (or an overflow of
    its dtype) raises ValueError. ``out``: write the result into this array (a's dtype, ``(m, d)`` or ``(m,)``)
    instead (docs/API.md)."""
    a = _matrix_arg(a, "a")
    code = _kind_arg(kind)
    m = int_arg(m, "m", 1)
    seed = seed_arg(seed)
    nnz = int_arg(nnz_per_column, "nnz_per_column", 1)
    threads = threads_arg(threads)
    n = a.shape[0]
    padded = 1 << (n - 1).bit_length()
    if kind == "srht" and m > padded:
        raise ValueError(f"m must be <= {padded} for kind='srht' (distinct rows of n = {n} padded to a power of two), "
                         f"got {m}")
    if kind == "sparse_sign" and nnz > m:
        raise ValueError(f"nnz_per_column must be <= m ({m}), got {nnz}")
    a2 = a[:, None] if a.ndim == 1 else a
    fn: _SketchKernel = _core._sketch_f32 if a.dtype == np.float32 else _core._sketch_f64
    dest = out_array(out, (m,) + a.shape[1:], a.dtype, (a,))
    result = fn(a2, None, m, code, seed, nnz, threads)
    if not np.isfinite(result).all():  # NaN/inf anywhere in a reaches the output (every row of a is added somewhere)
        _raise_non_finite([("a", a)], "the sketch")
    return into_out(result[:, 0] if a.ndim == 1 else result, dest)


def sketch_rows_rule(d: int, eps: float = 0.5, delta: float = 0.01) -> int:
    """The default row count of :func:`lstsq_sketched` (before the cap at n): the smallest m whose bound
    ``eps_bound(m) = sqrt(ln(d / delta) d / m) / (1 - sqrt(d / m))^2`` is at most ``eps``.

    For m >> d this is ``m ~ ln(d / delta) d / eps^2``; the factor ``(1 - sqrt(d/m))^-2`` (the smallest singular value
    of a subspace embedding, squared) makes it honest when m is a small multiple of d, where errors on designs with
    rows of leverage ~1 grow much faster than sqrt(d/m). The constant is fitted to measurements (dense sketches,
    100 seeds per case, see docs/ARCHITECTURE.md); it is not a proven theorem - the proven bounds (Price, Song,
    Woodruff 2017) need more rows."""
    d = int_arg(d, "d", 1)
    eps, delta = _eps_delta(eps, delta)
    # eps_bound(m) >= sqrt(C ln(d / delta) d / m) for every m: no m below this meets eps.
    fewest = _RULE_C * math.log(d / delta) * d / (eps * eps) if eps * eps > 0 else math.inf
    if not fewest < _MAX_RULE_ROWS:
        amount = f"{fewest:.3g}" if math.isfinite(fewest) else "1e308"
        raise ValueError(f"eps={eps} is too small (with d={d}, delta={delta}): the sketch would need more than "
                         f"{amount} rows (about ln(d/delta) d / eps^2), beyond 2**62; use a larger eps, or pass m")
    hi = d + 1
    while _eps_of_rows(hi, d, delta) > eps:
        hi *= 2
    lo = max(d + 1, hi // 2)
    while lo < hi:  # eps_of_rows decreases with m: the first m that meets eps
        mid = (lo + hi) // 2
        if _eps_of_rows(mid, d, delta) <= eps:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _eps_delta(eps: float, delta: float) -> tuple[float, float]:
    for name, value in (("eps", eps), ("delta", delta)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a finite float, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite float, got {value!r}")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return float(eps), float(delta)


def _eps_of_rows(m: int, d: int, delta: float) -> float:
    if m <= d:
        return math.inf
    return math.sqrt(_RULE_C * math.log(d / delta) * d / m) / (1.0 - math.sqrt(d / m)) ** 2


class SketchedLstsqResult:
    """What :func:`lstsq_sketched` returns.

    ``x``: the solution, ``(d,)`` or ``(d, k)`` in a's dtype. ``m``, ``kind``, ``method``: the sketch used.
    ``iterations``: LSQR iterations (0 for ``method="solve"``; the most over b's columns). ``eps_bound``: the eps of
    the l_inf guarantee ``|x - x*|_inf <= eps / sqrt(d) * ||a x* - b|| * ||pinv(a)||`` that m gives by the documented
    rule (:func:`sketch_rows_rule`; for ``method="precondition"`` it is the warm start's, the final x is accurate to
    ``tol``). ``residual_norm``: ``||a x - b||_2`` (per column of b), computed on first access with one pass over a -
    until then the result keeps references to a and b."""

    __slots__ = ("x", "m", "kind", "method", "iterations", "eps_bound", "_inputs", "_residual", "_threads")
    x: npt.NDArray[np.floating[Any]]
    m: int
    kind: str
    method: str
    iterations: int
    eps_bound: float
    _inputs: tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]] | None  # (a, b) until residual_norm
    _residual: float | npt.NDArray[np.float64] | None
    _threads: int

    def __init__(self, x: npt.NDArray[np.floating[Any]], m: int, kind: str, method: str, iterations: int,
                 eps_bound: float, a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]],
                 threads: int) -> None:
        self.x, self.m, self.kind, self.method = x, m, kind, method
        self.iterations, self.eps_bound = iterations, eps_bound
        self._inputs, self._residual, self._threads = (a, b), None, threads

    @property
    def residual_norm(self) -> float | npt.NDArray[np.float64]:
        if self._residual is None:
            a, b = self._inputs  # type: ignore[misc]  # not None while _residual is None
            self._residual = _residual_norms(a, b, self.x, self._threads)
            self._inputs = None
        return self._residual

    def __repr__(self) -> str:
        return (f"SketchedLstsqResult(x.shape={self.x.shape}, m={self.m}, kind={self.kind!r}, method={self.method!r}, "
                f"iterations={self.iterations}, eps_bound={self.eps_bound:.3g})")


def _rows_contiguous_f64(a: npt.NDArray[Any]) -> bool:
    return a.dtype == np.float64 and (a.shape[1] <= 1 or a.strides[1] == 8) and a.strides[0] % 8 == 0 \
        and a.strides[0] >= 0


def _residual_norms(a: npt.NDArray[Any], b: npt.NDArray[np.floating[Any]], x: npt.NDArray[np.floating[Any]],
                    threads: int) -> float | npt.NDArray[np.float64]:
    x2 = x.reshape(x.shape[0], -1)
    b2 = b.reshape(b.shape[0], -1)
    norms = np.empty(x2.shape[1])
    r = np.empty(a.shape[0])
    for j in range(x2.shape[1]):
        if _rows_contiguous_f64(a):
            _core._matvec(a, np.ascontiguousarray(x2[:, j], dtype=np.float64), r, threads)
        else:
            r[:] = a @ x2[:, j].astype(a.dtype)
        r -= b2[:, j]
        norms[j] = float(np.linalg.norm(r))
    return float(norms[0]) if b.ndim == 1 else norms


def lstsq_sketched(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]], *, eps: float = 0.5,
                   delta: float = 0.01, m: int | None = None, kind: str = "srht", method: str = "solve",
                   seed: int = 0, tol: float = 1e-10, max_iter: int = 100, nnz_per_column: int = 8,
                   threads: int | None = None) -> SketchedLstsqResult:
    """Least squares ``argmin ||a x - b||_2`` for tall ``a`` (``(n, d)``, n >= d, full column rank) by sketching.

    ``method="solve"`` (sketch-and-solve): sketch ``[a | b]`` once with an ``(m, n)`` sketch S of ``kind`` and solve
    ``argmin ||S a x - S b||`` by Householder QR (float64; never the normal equations). With a dense sketch (``srht``,
    ``gaussian``) the solution satisfies ``|x - x*|_inf <= eps/sqrt(d) ||a x* - b|| ||pinv(a)||`` with probability
    about ``1 - delta`` when m follows the rule of :func:`sketch_rows_rule` (the default:
    about ``ln(d/delta) d / eps^2`` for m >> d, capped at n with a warning); ``result.eps_bound`` is the eps the m used
    gives. Sparse sketches (``countsketch``, ``sparse_sign``) are faster to apply but have no such guarantee: a few
    rows of high leverage plus a few large residuals make CountSketch fail with probability about d/m, whatever m.

    ``method="precondition"`` (sketch-and-precondition, float64 only): R from the QR of ``S a`` is a right
    preconditioner; starting from the sketch-and-solve x, LSQR on ``a R^-1`` runs until its residual tests pass at
    ``tol`` (or ``max_iter`` iterations, with a warning). Each iteration reads a twice. b's columns are solved one
    after another.

    ``b``: ``(n,)`` or ``(n, k)``, a's dtype. ``m``: explicit row count, ``d <= m <= n`` (ValueError otherwise).
    Rank-deficient ``a`` (numerically, as seen through the sketch) raises ValueError. NaN/inf raise ValueError.
    Neither a nor b is copied by the sketch; ``method="precondition"`` needs a's rows contiguous and otherwise copies a
    once to C order (documented cost). ``threads`` applies to the sketch and the LSQR products."""
    a = _matrix_arg(a, "a")
    if a.ndim != 2:
        raise ValueError(f"a must be 2-D (n, d), got shape {a.shape}")
    b = _matrix_arg(b, "b", dtype=a.dtype)
    n, d = a.shape
    if b.shape[0] != n:
        raise ValueError(f"b must have {n} rows (a.shape[0]), got shape {b.shape}")
    if n < d:
        raise ValueError(f"a must be tall: n >= d, got shape {a.shape}; lstsq_sketched is for overdetermined problems")
    eps, delta = _eps_delta(eps, delta)
    code = _kind_arg(kind)
    method = choice(method, "method", LSTSQ_METHODS)
    if method == "precondition" and a.dtype != np.float64:
        raise TypeError("method='precondition' iterates in float64: a and b must be float64, got "
                        f"{a.dtype}; convert with .astype(numpy.float64) or use method='solve'")
    seed = seed_arg(seed)
    nnz = int_arg(nnz_per_column, "nnz_per_column", 1)
    max_iter = int_arg(max_iter, "max_iter", 1)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) or not 0 < tol < 1:
        raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
    threads = threads_arg(threads)
    if m is None:
        m = sketch_rows_rule(d, eps, delta)
        if m > n:
            warnings.warn(f"the rule for eps={eps}, delta={delta}, d={d} asks for m = {m} rows > n = {n}: using m = n "
                          f"(eps_bound = {_eps_of_rows(n, d, delta):.3g}); an exact solver may be as fast here",
                          UserWarning, stacklevel=2)
            m = n
    else:
        m = int_arg(m, "m", 1)
        if not d <= m <= n:
            raise ValueError(f"m must be in [d, n] = [{d}, {n}], got {m}")
    if kind == "sparse_sign" and nnz > m:
        raise ValueError(f"nnz_per_column must be <= m ({m}), got {nnz}")
    b2 = b[:, None] if b.ndim == 1 else b
    fn: _SketchKernel = _core._sketch_f32 if a.dtype == np.float32 else _core._sketch_f64
    sab = fn(a, b2, m, code, seed, nnz, threads)
    if not np.isfinite(sab).all():
        _raise_non_finite([("a", a), ("b", b)], "the sketch of [a | b]")
    r = np.linalg.qr(sab.astype(np.float64, copy=False), mode="r")
    r11, r12 = r[:d, :d], r[:d, d:]
    diag = np.abs(np.diag(r11))
    if not diag.min() > max(m, d) * np.finfo(a.dtype).eps * diag.max():
        raise ValueError(f"a is rank-deficient (or too ill-conditioned for {a.dtype}): the sketch S a has "
                         f"smallest/largest R diagonal {diag.min() / max(diag.max(), 1e-300):.3g}; "
                         "lstsq_sketched needs "
                         "full column rank (use numpy.linalg.lstsq for the minimum-norm solution)")
    x = np.linalg.solve(r11, r12)  # r11 is upper triangular: LU does no pivoting here, i.e. back substitution
    iterations = 0
    if method == "precondition":
        ac = a if _rows_contiguous_f64(a) else np.ascontiguousarray(a)
        x, iterations = _lsqr_preconditioned(ac, b2, r11, x, tol, max_iter, threads)
    x = x.astype(a.dtype, copy=False)
    if b.ndim == 1:
        x = x[:, 0]
    return SketchedLstsqResult(x, m, kind, method, iterations, _eps_of_rows(m, d, delta), a, b, threads)


def _lsqr_preconditioned(a: npt.NDArray[np.float64], b2: npt.NDArray[np.float64], r: npt.NDArray[np.float64],
                         x0: npt.NDArray[np.float64], tol: float, max_iter: int,
                         threads: int) -> tuple[npt.NDArray[np.float64], int]:
    """LSQR (Paige & Saunders 1982) on the operator M = a R^-1 for each column of b, started at x0: solve
    min ||M y - (b - a x0)||, x = x0 + R^-1 y. Stops when ||M^T r|| <= tol ||M|| ||r|| or ||r|| <= tol ||b|| (the
    estimates of the recurrences, as in scipy's lsqr with atol = btol = tol)."""
    n, d = a.shape
    rinv = np.linalg.solve(r, np.eye(d))  # upper triangular inverse (d x d)
    x = np.array(x0, dtype=np.float64, order="F")
    u = np.empty(n)
    av = np.empty(n)
    atu = np.empty(d)
    most = 0
    for j in range(b2.shape[1]):
        bj = np.ascontiguousarray(b2[:, j])
        _core._matvec(a, np.ascontiguousarray(x[:, j]), av, threads)
        np.subtract(bj, av, out=u)  # residual of the warm start
        bnorm = float(np.linalg.norm(bj))
        beta = float(np.linalg.norm(u))
        if beta == 0.0 or bnorm == 0.0:
            continue
        u /= beta
        _core._rmatvec(a, u, atu, threads)
        v = rinv.T @ atu
        alpha = float(np.linalg.norm(v))
        if alpha == 0.0:
            continue
        v /= alpha
        w = v.copy()
        y = np.zeros(d)
        phibar, rhobar = beta, alpha
        anorm2 = 0.0
        iterations = 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 (read after the loop: the count run)
            _core._matvec(a, rinv @ v, av, threads)  # u = M v - alpha u
            u *= -alpha
            u += av
            beta = float(np.linalg.norm(u))
            if beta > 0:
                u /= beta
            anorm2 += alpha * alpha + beta * beta
            _core._rmatvec(a, u, atu, threads)  # v = M^T u - beta v
            v *= -beta
            v += rinv.T @ atu
            alpha = float(np.linalg.norm(v))
            if alpha > 0:
                v /= alpha
            rho = math.hypot(rhobar, beta)
            c, s = rhobar / rho, beta / rho
            theta, rhobar = s * alpha, -c * alpha
            phi, phibar = c * phibar, s * phibar
            y += (phi / rho) * w
            w = v - (theta / rho) * w
            rnorm, arnorm = phibar, phibar * alpha * abs(c)
            if arnorm <= tol * math.sqrt(anorm2) * rnorm or rnorm <= tol * bnorm:
                break
        else:
            warnings.warn(f"LSQR reached max_iter={max_iter} before tol={tol} (column {j} of b)", UserWarning,
                          stacklevel=3)
        x[:, j] += rinv @ y
        most = max(most, iterations)
    return x, most
