"""Streamed pickling of the indexes: the meta and sections of the container (_container.py), sent as parts of
at most ``PART_BYTES`` each, so that pickling and unpickling hold about one part beyond the index
(docs/ARCHITECTURE.md, "Persistence").

An index's ``__reduce_ex__(protocol)`` returns ``reduce(...)`` below (protocol >= 2; protocols 0 and 1 keep the
whole-state pickle). Pickle then writes:

1. ``unpickle_begin(kind, kind_version, meta_json)``: a blank ``_Unpickling`` object that runs the kind's restore
   steps (the generator its ``load`` runs too, see ``_container.restore``), memoised as the index;
2. one list item per part, each the result of ``unpickle_part(index, section, nbytes)`` with a single list item
   of its own: the part's bytes as one Python ``int``. Pickle memoises every bytes, tuple or list object it
   writes, in the pickler and again in the unpickler, so bytes payloads would all stay alive until the end (a
   whole copy of the index, twice); ints are never memoised, and a one-item list makes the unpickler call
   ``_PartSink.append(payload)`` right after reading it, which pushes the part into the restore steps and lets
   it go;
3. ``BUILD ("end", {section: CRC-32})``: the checksums of the parts' bytes per section, filled in while the parts
   were drawn (pickle writes the state after the list items); ``_Unpickling.__setstate__`` checks them and that
   the steps finished, then turns the object into the index they built (its class and attributes).

``copy.copy`` / ``copy.deepcopy`` (the copy module applies the state before the list items, pickle after them)
go through ``copy_of``: the same reduce, its parts handed over directly, in pickle's order.
Pickles written before this (``{"data": bytes}`` or the index's dict state) still load through ``__setstate__``.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _container

PART_BYTES = 1 << 16  # bytes per part: one int at a time in the pickler and in the unpickler. Below glibc's
# 128 KiB mmap threshold, so the transients are reused heap blocks: with 1 MiB parts, freeing them raises the
# dynamic threshold and the heap fragments (pickle.dump to a file peaked 0.3x beyond the index, 0.02x now).

# kind -> (restore steps factory(meta, layout, where), versions read); filled by the index modules
_KINDS: dict[str, tuple[Callable[..., _container.RestoreSteps], tuple[int, ...]]] = {}


def register(kind: str, steps: Callable[..., _container.RestoreSteps], versions: tuple[int, ...]) -> None:
    _KINDS[kind] = (steps, versions)


def _raw(chunk: npt.NDArray[Any]) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    return memoryview(chunk).cast("B")  # type: ignore[arg-type]  # ndarray buffers: numpy's stubs (< 3.12)


class _Part:
    """Pickling side: one part of a section (``chunk``: C-contiguous rows), reduced to a sink fed with its bytes
    as an int; the chunk is dropped once reduced (the pickler memoises this object)."""

    __slots__ = ("owner", "name", "chunk")

    def __init__(self, owner: object, name: str, chunk: npt.NDArray[Any]) -> None:
        self.owner, self.name = owner, name
        self.chunk: npt.NDArray[Any] | None = chunk

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        chunk, self.chunk = self.chunk, None
        assert chunk is not None, "a part is pickled once"
        payload = int.from_bytes(_raw(chunk), "little")
        return unpickle_part, (self.owner, self.name, chunk.nbytes), None, iter([payload])


class _PartStream:
    """The parts of every section, in order, cut at row boundaries; ``close`` (e.g. releasing a save session)
    runs when the stream ends or is dropped."""

    def __init__(self, owner: object, sections: list[_container.SectionSpec], close: Callable[[], None] | None):
        self._parts = self._generate(owner, sections)
        self._close = close
        self.crcs: dict[str, int] = {}  # of the parts drawn so far, per section

    @staticmethod
    def _generate(owner: object, sections: list[_container.SectionSpec]) -> Iterator[_Part]:
        for spec in sections:
            rows = max(1, PART_BYTES // max(1, _container.row_bytes(spec.dtype, spec.shape)))
            for chunk in spec.chunks():
                chunk = np.ascontiguousarray(chunk, spec.dtype).reshape((-1,) + spec.shape[1:])
                for b in range(0, len(chunk), rows):
                    yield _Part(owner, spec.name, chunk[b:b + rows])

    def __iter__(self) -> _PartStream:
        return self

    def __next__(self) -> _Part:
        try:
            part = next(self._parts)
        except BaseException:
            self.close()
            raise
        assert part.chunk is not None
        self.crcs[part.name] = zlib.crc32(_raw(part.chunk), self.crcs.get(part.name, 0))
        return part

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()


def reduce(owner: object, kind: str, kind_version: int,
           plan: AbstractContextManager[tuple[dict[str, Any], list[_container.SectionSpec]]]) -> tuple[Any, ...]:
    """``owner.__reduce_ex__(protocol)`` for protocols >= 2: rebuilt by ``unpickle_begin`` from the parts of the
    sections a save plan (the index's ``_save_plan()``) yields, drawn lazily; the plan stays entered (its locks
    held) until the parts are all drawn or the pickle is abandoned."""
    stack = contextlib.ExitStack()
    try:
        meta, sections = stack.enter_context(plan)
        meta = dict(meta, sections=[{"name": s.name, "dtype": s.dtype.str, "shape": list(s.shape)}
                                    for s in sections])
        parts = _PartStream(owner, sections, stack.close)
        return unpickle_begin, (kind, kind_version, json.dumps(meta, sort_keys=True)), ("end", parts.crcs), parts
    except BaseException:
        stack.close()
        raise


class _Unpickling:
    """Unpickling side: the index while its parts arrive (then, at BUILD, the index itself)."""

    def __init__(self, kind: Any, kind_version: Any, meta_json: Any) -> None:
        if kind not in _KINDS or not isinstance(meta_json, str):
            raise ValueError(f"pickle: not a simkern index stream (kind {kind!r})")
        steps, versions = _KINDS[kind]
        if kind_version not in versions:
            raise ValueError(f"pickle: unsupported {kind} version {kind_version!r} (this build reads "
                             f"{', '.join(map(str, versions))})")
        try:
            meta = json.loads(meta_json)
            layout: _container.Layout = {}
            for spec in meta.pop("sections"):
                name, dtype, shape = _container.section_spec(spec)
                layout[name] = (dtype, shape)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"pickle: corrupted {kind} stream ({e})") from None
        self._layout = layout
        self._left = {name: dtype.itemsize * int(np.prod(shape, dtype=np.int64)) for name, (dtype, shape) in
                      layout.items()}
        self._crcs: dict[str, int] = {}
        self._result: Any = None
        self._steps = steps(meta, layout, "pickle")
        self._pending: _container.Request | None = None
        self._advance(None)

    def _advance(self, data: npt.NDArray[Any] | None) -> None:
        try:
            self._pending = next(self._steps) if data is None else self._steps.send(data)
        except StopIteration as done:
            self._pending, self._result = None, done.value

    def _push(self, name: Any, payload: bytes) -> None:
        if self._pending is None or name != self._pending[0]:
            want = "nothing more" if self._pending is None else f"section {self._pending[0]!r}"
            raise ValueError(f"pickle: corrupted stream (a part of {name!r} where {want} was expected)")
        dtype, shape = self._layout[name]
        if not payload or len(payload) > self._left[name] or len(payload) % max(1, _container.row_bytes(dtype, shape)):
            raise ValueError(f"pickle: corrupted stream (a part of {name!r} of {len(payload)} bytes)")
        self._left[name] -= len(payload)
        self._crcs[name] = zlib.crc32(payload, self._crcs.get(name, 0))
        self._advance(np.frombuffer(payload, dtype).reshape((-1,) + shape[1:]))

    def append(self, item: Any) -> None:
        if isinstance(item, _Part):  # copy.copy: the parts come as they are
            chunk, item.chunk = item.chunk, None
            self._push(item.name, b"" if chunk is None else bytes(_raw(chunk)))
        elif not (isinstance(item, _PartSink) and item.target is self and item.done):
            raise ValueError("pickle: corrupted stream (an item that is not a part)")

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)

    def __setstate__(self, state: Any) -> None:
        if self._result is None:
            raise ValueError("pickle: the stream ended before the index was complete")
        if not (isinstance(state, tuple) and len(state) == 2 and state[0] == "end" and state[1] == self._crcs):
            raise ValueError("pickle: checksum mismatch (the stream is corrupted)")
        result = self._result
        self.__dict__.clear()
        self.__dict__.update(result.__dict__)
        self.__class__ = type(result)  # the object pickle memoised becomes the index

    def __repr__(self) -> str:
        return "<simkern index being unpickled>"


def copy_of(obj: Any) -> Any:
    """A copy of the index ``obj`` through its streamed reduce, without pickling (``__copy__``/``__deepcopy__``)."""
    func, args, state, parts = obj.__reduce_ex__(4)
    copy = func(*args)
    for part in parts:
        copy.append(part)
    copy.__setstate__(state)
    return copy


def unpickle_begin(kind: Any, kind_version: Any, meta_json: Any) -> _Unpickling:
    return _Unpickling(kind, kind_version, meta_json)


class _PartSink:
    """Takes one part's payload (an int) and pushes its bytes into ``target``."""

    __slots__ = ("target", "name", "nbytes", "done")

    def __init__(self, target: Any, name: Any, nbytes: Any) -> None:
        if not isinstance(target, _Unpickling) or type(nbytes) is not int or not 0 < nbytes <= 1 << 40:
            raise ValueError("pickle: corrupted stream (a part outside an index stream)")
        self.target, self.name, self.nbytes, self.done = target, name, nbytes, False

    def append(self, payload: Any) -> None:
        if self.done or type(payload) is not int or payload < 0 or payload.bit_length() > 8 * self.nbytes:
            raise ValueError(f"pickle: corrupted stream (the payload of a part of {self.name!r})")
        self.target._push(self.name, payload.to_bytes(self.nbytes, "little"))
        self.done = True

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)


def unpickle_part(target: Any, name: Any, nbytes: Any) -> _PartSink:
    return _PartSink(target, name, nbytes)
