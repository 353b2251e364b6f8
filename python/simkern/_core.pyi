"""Type stubs for the compiled module simkern._core (hand-written; tests/test_runtime.py checks they match)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

def capabilities() -> dict[str, bool]: ...
def available_isas() -> list[str]: ...
def best_isa() -> str: ...
def active_isa() -> str: ...
def set_max_isa(name: str) -> str: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def kernel_names() -> dict[str, dict[str, str]]: ...
def build_info() -> dict[str, Any]: ...
def _pool_probe(n_tasks: int, threads: int, fail_at: int = -1, sleep_ms: float = 0.0) -> list[int]: ...
def _maxsim_dense(
    q_tokens: npt.NDArray[np.float32],
    q_offsets: npt.NDArray[np.int64],
    d_tokens: npt.NDArray[Any],
    d_dtype: int,
    d_offsets: npt.NDArray[np.int64],
    threads: int,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def _maxsim_pairs(
    q_tokens: npt.NDArray[np.float32],
    q_offsets: npt.NDArray[np.int64],
    d_tokens: npt.NDArray[Any],
    d_dtype: int,
    d_offsets: npt.NDArray[np.int64],
    query_ids: npt.NDArray[np.int64],
    doc_ids: npt.NDArray[np.int64],
    threads: int,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def _maxsim_topk(
    q_tokens: npt.NDArray[np.float32],
    q_offsets: npt.NDArray[np.int64],
    d_tokens: npt.NDArray[Any],
    d_dtype: int,
    d_offsets: npt.NDArray[np.int64],
    k: int,
    cand_ids: npt.NDArray[np.int64] | None,
    cand_offsets: npt.NDArray[np.int64] | None,
    threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def _pq_transpose(codebooks: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
def _pq_encode(x: npt.NDArray[np.float32], ct: npt.NDArray[np.float32], threads: int) -> npt.NDArray[np.uint8]: ...
def _pq_tables(
    queries: npt.NDArray[np.float32],
    ct: npt.NDArray[np.float32],
    metric: int,
    threads: int,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def _pq_adc(tables: npt.NDArray[np.float32], codes: npt.NDArray[np.uint8], threads: int) -> npt.NDArray[np.float32]: ...
def _pq_train(
    x: npt.NDArray[np.float32], m: int, ksub: int, iters: int, seed: int, init: int, threads: int
) -> npt.NDArray[np.float32]: ...
def _pq_search(
    tables: npt.NDArray[np.float32],
    codes: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.uint8] | None,
    k: int,
    smaller_is_better: bool,
    threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def _pq_search_quantised(
    tables: npt.NDArray[np.float32],
    codes: npt.NDArray[np.uint8],
    blocks: npt.NDArray[np.uint8],
    mask: npt.NDArray[np.uint8] | None,
    k: int,
    smaller_is_better: bool,
    threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
def _pq_scan4(
    blocks: npt.NDArray[np.uint8], luts: npt.NDArray[np.uint8], threshold: int
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.bool_]]: ...
def _pq_scan8(
    blocks: npt.NDArray[np.uint8], luts: npt.NDArray[np.uint8], threshold: int
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.bool_]]: ...

class _FDEPlan:
    def __init__(
        self,
        dim: int,
        repetitions: int,
        simhash_bits: int,
        ams: bool,
        projection_dim: int,
        fill_empty: bool,
        final_dim: int,
        seed: int,
    ) -> None: ...
    @property
    def output_dim(self) -> int: ...
    @property
    def inner_dim(self) -> int: ...
    def encode(
        self,
        tokens: npt.NDArray[np.float32],
        offsets: npt.NDArray[np.int64],
        documents: bool,
        threads: int,
        out: npt.NDArray[np.float32] | None = None,
        name: str = "x",
    ) -> npt.NDArray[np.float32]: ...
    def encode_list(
        self,
        items: Sequence[npt.NDArray[np.float32]],
        documents: bool,
        allow_empty: bool,
        threads: int,
        out: npt.NDArray[np.float32] | None = None,
        name: str = "x",
    ) -> npt.NDArray[np.float32] | None: ...
    def matrices(self) -> dict[str, npt.NDArray[Any]]: ...

def _hnsw_distances(q: npt.NDArray[np.float32], vectors: npt.NDArray[Any], l2: bool) -> npt.NDArray[np.float32]: ...

class _HNSW:
    def __init__(self, dim: int, metric: int, M: int, ef_construction: int, f16: bool, seed: int) -> None: ...
    def add(self, x: npt.NDArray[np.float32], ids: npt.NDArray[np.int64], threads: int) -> None: ...
    def search(
        self,
        queries: npt.NDArray[np.float32],
        k: int,
        ef: int,
        mask: npt.NDArray[np.uint8] | None = None,
        ids: npt.NDArray[np.int64] | None = None,
        threads: int = 0,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
    def remove(self, ids: npt.NDArray[np.int64]) -> int: ...
    def unremove(self, id: int) -> bool: ...
    def contains(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]: ...
    def get_vectors(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]: ...
    def compact(self, threads: int) -> None: ...
    def state(self) -> dict[str, Any]: ...
    def labels(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
    def restore(
        self,
        labels: npt.NDArray[np.int64],
        levels: npt.NDArray[np.uint8],
        deleted: npt.NDArray[np.uint8],
        vectors: npt.NDArray[np.float32],
        link_counts: npt.NDArray[np.uint32],
        link_ids: npt.NDArray[np.uint32],
        entry: int,
        max_level: int,
        external: bool = False,
    ) -> None: ...
    def links(self, node: int, level: int) -> list[int]: ...
    @property
    def size(self) -> int: ...
    @property
    def live(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def max_level(self) -> int: ...
    @property
    def external(self) -> bool: ...

def _fwht_f32(x: npt.NDArray[np.float32], normalize: bool, threads: int) -> None: ...
def _fwht_f64(x: npt.NDArray[np.float64], normalize: bool, threads: int) -> None: ...
