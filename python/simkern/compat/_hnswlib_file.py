"""hnswlib 0.8.0's index files, read into a simkern.HNSWIndex and written from one (simkern.compat.hnswlib).

hnswlib's ``HierarchicalNSW::saveIndex`` layout (little-endian, no magic, no checksum; ``size_t`` = u64):

- header, 96 bytes: u64 offsetLevel0 (0), u64 max_elements, u64 cur_element_count, u64 size_data_per_element,
  u64 label_offset, u64 offsetData, i32 maxlevel, u32 enterpoint_node, u64 maxM (M), u64 maxM0 (2M), u64 M,
  f64 mult (1 / ln M), u64 ef_construction;
- the level-0 block: cur_element_count records of size_data_per_element bytes: u32 list head (bits 0-15 the link
  count, bit 16 the deleted mark, the rest zero), maxM0 u32 links, dim float32 (offsetData), u64 label
  (label_offset);
- per element, in order: u32 byte size of its upper link lists (level * (4 + 4 maxM)), then per level 1..level a
  u32 count and maxM u32 links.

The file does not hold the space (l2 / ip / cosine: the caller's ``Index(space, dim)`` says) and holds the dim
only through the record sizes; a file whose dim differs from the index's is refused here (hnswlib reads it
anyway, misreading every vector). Reading validates every field, every link (in range, within the level's limit,
to a node of that level) and the level-0 records' flags, and refuses a foreign, truncated or corrupt file with
ValueError naming it. Both directions stream the vectors (a chunk of records at a time); the links of the whole
graph are held once (u32, about 8 M bytes per element).

Mapping to simkern's graph: an element is a node with the same label, level, links and deleted mark. hnswlib
maps a label that several elements carry to the last of them (its load loop); the others become tombstones here.
Writing: live nodes and the tombstones of the labels the caller still counts as deleted are written (in node
order), the others (replaced or reused slots) are dropped and the links to them removed; simkern chains exact
duplicate vectors instead of linking them, so a chained copy gets its predecessor's links and a link from it.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable
from typing import IO, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .. import _core
from .._validate import MAX_ID
from ..hnsw import HNSWIndex

HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_DELETE_MARK = 1 << 16
_CHUNK_BYTES = 1 << 22  # level-0 records read / written per step
_NO_ENTRY = 0xFFFFFFFF


class Loaded(NamedTuple):
    hnsw: HNSWIndex
    max_elements: int  # the header's
    deleted: npt.NDArray[np.int64]  # labels marked deleted (the current element of their label)
    elements: int  # elements whose label is current (hnswlib's count, less elements hidden by a later same label)


def _fail(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: {what}")


def _record_dtype(max_m0: int, dim: int) -> np.dtype[np.void]:
    offset_data = 4 + 4 * max_m0
    return np.dtype({"names": ["head", "links", "vector", "label"],
                     "formats": ["<u4", ("<u4", (max_m0,)), ("<f4", (dim,)), "<u8"],
                     "offsets": [0, 4, offset_data, offset_data + 4 * dim],
                     "itemsize": offset_data + 4 * dim + 8})


def file_dim(path: str | os.PathLike[str]) -> int | None:
    """The dim an hnswlib index file's records hold, or None if it does not look like one."""
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    _, _, _, _, label_offset, offset_data, *_ = HEADER.unpack(head)
    data = label_offset - offset_data
    return data // 4 if 0 < data and data % 4 == 0 else None


def _header(f: IO[bytes], header: struct.Struct, where: str, what: str) -> tuple[tuple[Any, ...], int]:
    """The header fields of an open file (read from its start) and the file's size; ValueError if it is shorter."""
    size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(header.size)
    if len(head) < header.size:
        raise _fail(where, f"not an hnswlib {what} file (too short: {size} bytes)")
    return header.unpack(head), size


def _check_dim(where: str, got: int, dim: int) -> None:
    if got != dim:
        raise _fail(where, f"the file holds vectors of dim {got}, the index was made with dim {dim}")


def read(path: str | os.PathLike[str], dim: int, metric: str, seed: int) -> Loaded:
    """An HNSWIndex (``metric``: the shim's space) from an hnswlib index file; ValueError if it is not one."""
    where = os.fspath(path)
    with open(path, "rb") as f:
        fields, size = _header(f, HEADER, where, "index")
        (offset_level0, max_elements, n, size_data, label_offset, offset_data, max_level, entry, max_m, max_m0, m,
         _mult, efc) = fields
        if offset_level0 != 0 or not 2 <= m <= 1024 or max_m != m or max_m0 != 2 * m or efc == 0 or \
                efc > 2**31 - 1 or offset_data != 4 + 4 * max_m0 or label_offset <= offset_data or \
                (label_offset - offset_data) % 4 or size_data != label_offset + 8:
            raise _fail(where, "not an hnswlib index file, or a corrupted one (header fields: M, maxM, maxM0 "
                               "= 2M with 2 <= M <= 1024, record layout)")
        _check_dim(where, (label_offset - offset_data) // 4, dim)
        if n >= 2**31 or HEADER.size + n * size_data > size:
            raise _fail(where, f"truncated or corrupted file ({n} elements of {size_data} bytes do not fit in "
                               f"{size} bytes)")
        if n == 0 and (max_level != -1 or entry != _NO_ENTRY) or n and not 0 <= entry < n:
            raise _fail(where, f"corrupted header (entry point {entry}, max level {max_level}, {n} elements)")
        rec = _record_dtype(max_m0, dim)
        rows = max(1, _CHUNK_BYTES // size_data)
        # Pass 1: heads, labels and level-0 links (the vectors are read in pass 2, straight into the graph).
        heads = np.empty(n, np.uint32)
        labels = np.empty(n, np.uint64)
        links0 = np.empty((n, max_m0), np.uint32)
        for b in range(0, n, rows):
            chunk = np.fromfile(f, rec, min(rows, n - b))
            heads[b:b + len(chunk)], labels[b:b + len(chunk)] = chunk["head"], chunk["label"]
            links0[b:b + len(chunk)] = chunk["links"]
        tail_bytes = size - f.tell()
        if tail_bytes % 4:
            raise _fail(where, "truncated or corrupted file (link lists)")
        words = np.fromfile(f, "<u4", tail_bytes // 4)
        levels, upper_at = _upper_lists(words, n, max_m, where)
        if (heads >> 17).any():
            raise _fail(where, "corrupted file (flags of a level-0 link list)")
        counts0 = heads & 0xFFFF
        if (counts0 > max_m0).any():
            raise _fail(where, "corrupted file (a level-0 link list longer than 2M)")
        if n and (labels > MAX_ID).any():
            raise _fail(where, "a label above 2**63 - 2 (simkern ids are int64; hnswlib's are uint64)")
        if n and (levels[entry] != max_level or levels.max() != max_level):
            raise _fail(where, f"corrupted header (max level {max_level}, entry point {entry})")
        marked = (heads & _DELETE_MARK) != 0
        # hnswlib's label lookup: the last element of each label
        ilabels = labels.astype(np.int64)
        last = np.zeros(n, bool)
        if n:
            _, first_rev = np.unique(ilabels[::-1], return_index=True)
            last[n - 1 - first_rev] = True
        deleted = (marked | ~last).astype(np.uint8)
        pair_counts, pair_rows = _pairs(counts0.astype(np.uint32), links0, levels, words, upper_at, max_m, max_m0)
        index = HNSWIndex(dim, metric=metric, M=int(m), ef_construction=int(efc), seed=seed)
        total = int(pair_counts.sum())
        try:
            restorer = _core._HNSWRestorer(index._core, ilabels, levels.astype(np.uint8), deleted, pair_counts,
                                           total, None, None)
            f.seek(HEADER.size)
            for b in range(0, n, rows):
                restorer.vectors(np.ascontiguousarray(np.fromfile(f, rec, min(rows, n - b))["vector"]))
            step = max(1, _CHUNK_BYTES // (4 * max_m0))
            for b in range(0, len(pair_counts), step):
                block, cnt = pair_rows[b:b + step], pair_counts[b:b + step]
                restorer.links(np.ascontiguousarray(block[np.arange(max_m0) < cnt[:, None]]))
            restorer.finish(np.zeros(n, np.uint32), int(entry) if n else -1, int(max_level) if n else 0)
        except ValueError as e:
            raise _fail(where, str(e)) from None
    index._next_id = int(ilabels.max()) + 1 if n else 0
    current = last
    return Loaded(index, int(max_elements), np.sort(ilabels[current & marked]), int(current.sum()))


def _upper_lists(words: npt.NDArray[np.uint32], n: int, max_m: int,
                 where: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Levels of the n elements and where each one's upper lists start in ``words`` (hnswlib's tail)."""
    per_level = 1 + max_m
    block = 4 * per_level
    w = words.tolist()  # a sequential walk: Python ints are the fastest way through it
    end = len(w)
    levels = [0] * n
    upper_at = [0] * n
    pos = 0
    try:
        for i in range(n):
            nbytes = w[pos]
            if nbytes:
                level, rest = divmod(nbytes, block)
                if rest or level >= 32:
                    raise _fail(where, f"corrupted file (the link lists of element {i})")
                levels[i], upper_at[i] = level, pos + 1
                pos += 1 + level * per_level
            else:
                pos += 1
    except IndexError:
        raise _fail(where, "truncated file (link lists)") from None
    if pos != end:
        raise _fail(where, f"corrupted file ({4 * (end - pos)} bytes after the last link list)" if pos < end else
                    "truncated file (link lists)")
    return np.array(levels, np.int64), np.array(upper_at, np.int64)


def _pairs(counts0: npt.NDArray[np.uint32], links0: npt.NDArray[np.uint32], levels: npt.NDArray[np.int64],
           words: npt.NDArray[np.uint32], upper_at: npt.NDArray[np.int64], max_m: int,
           max_m0: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Link counts and lists (rows of width maxM0) per (element, level), elements in order, levels ascending (the
    order of simkern's sections)."""
    n = len(levels)
    start = np.zeros(n + 1, np.int64)
    np.cumsum(levels + 1, out=start[1:])
    pairs = int(start[-1])
    counts = np.zeros(pairs, np.uint32)
    rows = np.zeros((pairs, max_m0), np.uint32)
    counts[start[:-1]] = counts0
    rows[start[:-1]] = links0
    up = np.flatnonzero(levels)
    if up.size:
        lv = levels[up]
        owner = np.repeat(up, lv)
        within = np.arange(int(lv.sum())) - np.repeat(np.cumsum(lv) - lv, lv)  # 0 .. level-1 per element
        at = upper_at[owner] + within * (1 + max_m)
        dest = start[owner] + 1 + within
        upper_counts = words[at]
        if (upper_counts > max_m).any():
            raise ValueError("corrupted file (an upper-level link list longer than M)")
        counts[dest] = upper_counts
        rows[dest, :max_m] = words[at[:, None] + 1 + np.arange(max_m)]
    return counts, rows


# -- writing ---------------------------------------------------------------------------------------------------
def write(f: IO[bytes], index: HNSWIndex, max_elements: int, deleted_labels: Iterable[int]) -> None:
    """Write ``index`` in hnswlib's format: its live nodes, plus the last tombstone of each of ``deleted_labels``
    (labels that hnswlib counts as marked deleted); other tombstones are left out (module docstring)."""
    session = index._core.save_session()
    try:
        small = session.small()
        n, dim, m = session.size, index.dim, index.M
        labels, levels = small["labels"], small["levels"].astype(np.int64)
        deleted = small["deleted"].astype(bool)
        next_dup, counts = small["next_dup"], small["link_counts"]
        ids = session.links(0, n)
        keep = _kept(labels, deleted, np.fromiter(deleted_labels, np.int64))
        max_m0 = 2 * m
        start = np.zeros(n + 1, np.int64)
        np.cumsum(levels + 1, out=start[1:])
        rows = np.zeros((len(counts), max_m0), np.int64)
        rows[np.arange(max_m0) < counts[:, None]] = ids
        lens = counts.astype(np.int64)
        _unchain(rows, lens, start, next_dup, max_m0)
        new_of_old = np.full(n, -1, np.int64)
        new_of_old[keep] = np.arange(int(keep.sum()))
        if not keep.all():  # links to dropped tombstones removed, the rest renumbered
            rows, lens = _remap(rows, lens, new_of_old)
            kept_pairs = np.repeat(keep, levels + 1)
            rows, lens = rows[kept_pairs], lens[kept_pairs]
        levels_k = levels[keep]
        nk = int(keep.sum())
        start_k = np.zeros(nk + 1, np.int64)
        np.cumsum(levels_k + 1, out=start_k[1:])
        entry_old, top = int(small["entry"]), int(small["max_level"])
        if nk == 0:
            entry, top = _NO_ENTRY, -1
        elif entry_old >= 0 and keep[entry_old]:
            entry = int(new_of_old[entry_old])
        else:  # the entry point was a dropped tombstone: the first kept node of the highest level
            top = int(levels_k.max())
            entry = int(np.flatnonzero(levels_k == top)[0])
        _reconnect(rows, lens, start_k, entry)
        rec = _record_dtype(max_m0, dim)
        header = HEADER.pack(0, max(int(max_elements), nk), nk, rec.itemsize, 4 + 4 * max_m0 + 4 * dim,
                             4 + 4 * max_m0, top, entry, m, max_m0, m, 1.0 / math.log(m),
                             index.ef_construction)
        f.write(header)
        kept_nodes = np.flatnonzero(keep)
        del_k = deleted[keep]
        step = max(1, _CHUNK_BYTES // rec.itemsize)
        for b in range(0, nk, step):
            nodes = kept_nodes[b:b + step]
            out = np.zeros(len(nodes), rec)
            at0 = start_k[b:b + len(nodes)]
            out["head"] = lens[at0].astype(np.uint32) | (del_k[b:b + len(nodes)].astype(np.uint32) << 16)
            out["links"] = rows[at0]
            out["label"] = labels[nodes].astype(np.uint64)
            # vectors of consecutive runs of kept nodes
            vec = np.empty((len(nodes), dim), np.float32)
            for s, e in _runs(nodes):
                vec[s:e] = session.vectors(int(nodes[s]), int(nodes[e - 1]) + 1)
            out["vector"] = vec
            f.write(out.view(np.uint8).data)
        f.write(_tail(rows, lens, levels_k, start_k, m).data)
    finally:
        session.close()


def _tail(rows: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], levels: npt.NDArray[np.int64],
          start: npt.NDArray[np.int64], m: int) -> npt.NDArray[np.uint32]:
    """hnswlib's upper link lists of every node, as u32 words: per node its byte size, then per level 1..level
    the count and M link slots."""
    per_level = 1 + m
    n = len(levels)
    at = np.zeros(n + 1, np.int64)
    np.cumsum(1 + levels * per_level, out=at[1:])
    out = np.zeros(int(at[-1]), np.uint32)
    out[at[:-1]] = levels * per_level * 4
    up = np.flatnonzero(levels)
    if up.size:
        lv = levels[up]
        owner = np.repeat(up, lv)
        within = np.arange(int(lv.sum())) - np.repeat(np.cumsum(lv) - lv, lv)  # 0 .. level-1 per node
        dest = at[owner] + 1 + within * per_level
        pair = start[owner] + 1 + within
        out[dest] = lens[pair]
        out[dest[:, None] + 1 + np.arange(m)] = rows[pair, :m]
    return out


def file_size(index: HNSWIndex, deleted_labels: Iterable[int]) -> int:
    """The byte size ``write`` produces for this state of ``index``."""
    session = index._core.save_session()
    try:
        small = session.small()  # labels, levels and deleted marks of one consistent state
    finally:
        session.close()
    lv = small["levels"].astype(np.int64)
    keep = _kept(small["labels"], small["deleted"].astype(bool), np.fromiter(deleted_labels, np.int64))
    dim, m = index.dim, index.M
    record = 4 + 8 * m + 4 * dim + 8
    return int(HEADER.size + keep.sum() * (record + 4) + lv[keep].sum() * 4 * (1 + m))


def _kept(labels: npt.NDArray[np.int64], deleted: npt.NDArray[np.bool_],
          deleted_labels: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Live nodes, and the last tombstone of each label in ``deleted_labels`` that is not live."""
    keep = ~deleted
    tomb = np.flatnonzero(deleted & np.isin(labels, deleted_labels) & ~np.isin(labels, labels[~deleted]))
    if tomb.size:
        _, first_rev = np.unique(labels[tomb][::-1], return_index=True)
        keep[tomb[len(tomb) - 1 - first_rev]] = True
    return keep


def _runs(nodes: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive values in ``nodes``."""
    if not len(nodes):
        return []
    cuts = np.flatnonzero(np.diff(nodes) != 1) + 1
    bounds = [0, *cuts.tolist(), len(nodes)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _put(rows: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], pair: int, target: int, cap: int) -> None:
    """Add a level-0 link ``target`` to list ``pair``: into a free slot, else in place of its last link."""
    if lens[pair] < cap:
        rows[pair, lens[pair]] = target
        lens[pair] += 1
    else:
        rows[pair, cap - 1] = target


def _unchain(rows: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], start: npt.NDArray[np.int64],
             next_dup: npt.NDArray[np.uint32], cap: int) -> None:
    """Replace simkern's duplicate chains (v -> w: w is an exact copy of v, reached through v) by level-0 links:
    w gets v's links and v a link to w."""
    for v in np.flatnonzero(next_dup):
        w = int(next_dup[v])
        pv, pw = int(start[v]), int(start[w])
        if lens[pw] == 0:
            mine = [int(v), *(int(t) for t in rows[pv, :lens[pv]] if t != w)][:cap]
            rows[pw, :len(mine)] = mine
            lens[pw] = len(mine)
        if w not in rows[pv, :lens[pv]]:
            _put(rows, lens, pv, w, cap)


def _remap(rows: npt.NDArray[np.int64], lens: npt.NDArray[np.int64],
           new_of_old: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Links renumbered by ``new_of_old``; links to dropped nodes (-1) removed, the rest kept in order."""
    width = rows.shape[1]
    valid = np.arange(width) < lens[:, None]
    mapped = np.where(valid, new_of_old[np.where(valid, rows, 0)], -1)
    ok = mapped >= 0
    order = np.argsort(~ok, axis=1, kind="stable")
    out = np.take_along_axis(mapped, order, axis=1)
    new_lens = ok.sum(axis=1)
    out[np.arange(width) >= new_lens[:, None]] = 0
    return out, new_lens.astype(np.int64)


def _reconnect(rows: npt.NDArray[np.int64], lens: npt.NDArray[np.int64], start: npt.NDArray[np.int64],
               entry: int) -> None:
    """Give every node other than the entry point an incoming level-0 link (one whose links all went to dropped
    tombstones would otherwise be unreachable): from its first out-neighbour, or from the entry point."""
    n = len(start) - 1
    if n < 2:
        return
    cap = rows.shape[1]
    at0 = start[:-1]
    valid = np.arange(cap) < lens[at0][:, None]
    indeg = np.bincount(rows[at0][valid], minlength=n)
    for u in np.flatnonzero(indeg == 0):
        if u == entry:
            continue
        pu = int(at0[u])
        host = int(rows[pu, 0]) if lens[pu] else entry
        if lens[pu] == 0:
            rows[pu, 0], lens[pu] = host, 1
        _put(rows, lens, int(at0[host]), int(u), cap)


# -- BFIndex files -----------------------------------------------------------------------------------------------
# hnswlib's BruteforceSearch::saveIndex: u64 maxelements, u64 size_per_element (4 dim + 8), u64 cur_element_count,
# then maxelements records (dim float32, u64 label) - the first cur_element_count hold the data, the rest whatever
# the buffer held (written as zeros here).
BF_HEADER = struct.Struct("<QQQ")


def _bf_dtype(dim: int) -> np.dtype[np.void]:
    return np.dtype([("vector", "<f4", (dim,)), ("label", "<u8")])


def read_bf(path: str | os.PathLike[str], dim: int) -> tuple[int, npt.NDArray[np.float32], npt.NDArray[np.uint64]]:
    """(max_elements, vectors, labels) of a BFIndex file; ValueError if it is not one of this dim."""
    where = os.fspath(path)
    with open(path, "rb") as f:
        (max_elements, per_element, n), size = _header(f, BF_HEADER, where, "BFIndex")
        if per_element < 12 or (per_element - 8) % 4:
            raise _fail(where, "not an hnswlib BFIndex file, or a corrupted one (record size)")
        _check_dim(where, (per_element - 8) // 4, dim)
        if n > max_elements or BF_HEADER.size + max_elements * per_element != size:
            raise _fail(where, f"truncated or corrupted file ({n} of {max_elements} records of {per_element} "
                               f"bytes, {size} bytes)")
        data = np.fromfile(f, _bf_dtype(dim), n)
    vectors, labels = np.ascontiguousarray(data["vector"]), np.ascontiguousarray(data["label"])
    if not np.isfinite(vectors).all():
        raise _fail(where, "non-finite vector values")
    if np.unique(labels).size != n:
        raise _fail(where, "corrupted file (a label held twice)")
    return int(max_elements), vectors, labels


def write_bf(f: IO[bytes], max_elements: int, vectors: npt.NDArray[np.float32],
             labels: npt.NDArray[np.uint64]) -> None:
    n, dim = vectors.shape
    rec = _bf_dtype(dim)
    f.write(BF_HEADER.pack(max_elements, rec.itemsize, n))
    step = max(1, _CHUNK_BYTES // rec.itemsize)
    for b in range(0, max_elements, step):
        out = np.zeros(min(step, max_elements - b), rec)
        e = min(n, b + len(out))
        if e > b:
            out["vector"][:e - b], out["label"][:e - b] = vectors[b:e], labels[b:e]
        f.write(out.view(np.uint8).data)
