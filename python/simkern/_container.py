"""The one file format of every index: a versioned container of named, checksummed sections (docs/ARCHITECTURE.md,
"Persistence").

Layout, little-endian:

- header, 64 bytes: magic ``SIMKERN\\0``; u32 container version (1); u32 kind version; 16-byte kind name (ASCII,
  zero padded); u64 meta length; u32 section count; u32 CRC-32 of the header's first 44 bytes and the meta; 16
  zero bytes;
- meta: UTF-8 JSON (the kind's fields, and under ``"sections"`` each section's name, dtype and shape in file
  order), zero padded to a multiple of 64;
- per section: a 64-byte head (32-byte name, u64 byte length, u32 CRC-32 of the bytes, 20 zero bytes), then the
  bytes, zero padded to a multiple of 64, so every section starts 64-byte aligned (a mapped file's arrays are
  aligned);
- trailer, 16 bytes: ``SIMKEND\\0`` and the u64 file length (a truncated file is refused).

Writing goes section by section from the caller's chunks (arrays are written from their own memory: no copy of
the whole file); each section's checksum is computed as it is written and patched into its head (the file is
seekable: a real file or a BytesIO). Reading checks every length against the file size before allocating, reads
each section straight into its array (``readinto``) and verifies its checksum; or maps the file and returns
views (``mapped=True``: sections larger than ``_MAPPED_VERIFY_LIMIT`` are not read at load - that is the point of
mapping them - and their checksums are not verified).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from . import _core

MAGIC = b"SIMKERN\0"
CONTAINER_VERSION = 1
_HEAD = struct.Struct("<8sII16sQII16x")  # magic, version, kind version, kind, meta length, sections, crc
_SECTION = struct.Struct("<32sQI20x")  # name, length, crc
_TRAILER = struct.Struct("<8sQ")
_END = b"SIMKEND\0"
_ALIGN = 64
_CHUNK = 1 << 24  # bytes per write / read / checksum step
_MAPPED_VERIFY_LIMIT = 1 << 20  # mapped sections up to this size are still read and verified at load
_DTYPES = {"<f4", "<f8", "|u1", "<u2", "<u4", "<i4", "<i8", "|b1"}  # the only dtypes a section may have
assert _HEAD.size == 64 and _SECTION.size == 64


def _pad(n: int) -> int:
    return -n % _ALIGN


class SectionSpec:
    """A section to write: ``name``, ``dtype`` and ``shape`` (declared in the meta before any bytes), and
    ``chunks()``, an iterable of C-contiguous arrays of that dtype whose bytes, in order, are the section's."""

    def __init__(self, name: str, dtype: npt.DTypeLike, shape: Sequence[int],
                 chunks: Callable[[], Iterable[npt.NDArray[Any]]]) -> None:
        self.name, self.dtype, self.shape, self.chunks = name, np.dtype(dtype), tuple(int(s) for s in shape), chunks
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @classmethod
    def of(cls, name: str, array: npt.NDArray[Any]) -> SectionSpec:
        """A section holding ``array`` (written from its own memory, in slices: no copy)."""
        arr = np.ascontiguousarray(array)
        flat = arr.reshape(-1)
        step = max(1, _CHUNK // max(1, arr.itemsize))
        return cls(name, arr.dtype, arr.shape, lambda: (flat[i:i + step] for i in range(0, flat.size, step)))


def write(f: IO[bytes], kind: str, kind_version: int, meta: dict[str, Any], sections: Sequence[SectionSpec]) -> None:
    """Write one container to the seekable binary file ``f`` (from its current position, which must be 0)."""
    for s in sections:
        if s.dtype.str not in _DTYPES:
            raise ValueError(f"section {s.name!r}: unsupported dtype {s.dtype}")
    meta = dict(meta, sections=[{"name": s.name, "dtype": s.dtype.str, "shape": list(s.shape)} for s in sections])
    body = json.dumps(meta, sort_keys=True).encode()
    head = _HEAD.pack(MAGIC, CONTAINER_VERSION, kind_version, kind.encode().ljust(16, b"\0"), len(body),
                      len(sections), 0)
    crc = zlib.crc32(body, zlib.crc32(head[:44]))
    f.write(head[:44] + struct.pack("<I", crc) + head[48:])
    f.write(body + b"\0" * _pad(len(body)))
    for s in sections:
        at = f.tell()
        f.write(_SECTION.pack(s.name.encode().ljust(32, b"\0"), s.nbytes, 0))
        crc, written = 0, 0
        for chunk in s.chunks():
            data = np.ascontiguousarray(chunk, dtype=s.dtype).reshape(-1).view(np.uint8)
            crc = zlib.crc32(data, crc)  # type: ignore[arg-type]  # ndarray buffers: numpy's stubs (< 3.12)
            f.write(data)  # type: ignore[call-overload]  # as above
            written += data.size
        if written != s.nbytes:
            raise ValueError(f"section {s.name!r}: {written} bytes written, {s.nbytes} declared")
        end = f.tell()
        f.seek(at + 40)  # the CRC field of this section's head
        f.write(struct.pack("<I", crc))
        f.seek(end)
        f.write(b"\0" * _pad(s.nbytes))
    f.write(_TRAILER.pack(_END, f.tell() + _TRAILER.size))


def section_spec(spec: Any) -> tuple[str, np.dtype[Any], tuple[int, ...]]:
    """(name, dtype, shape) of one entry of the meta's section list; ValueError naming what is wrong."""
    try:
        name, dtype_str, shape = str(spec["name"]), str(spec["dtype"]), tuple(int(s) for s in spec["shape"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("section list") from None
    if dtype_str not in _DTYPES or not 1 <= len(shape) <= 4 or any(s < 0 for s in shape):
        raise ValueError(f"section {name!r}")
    return name, np.dtype(dtype_str), shape


Layout = dict[str, tuple[np.dtype[Any], tuple[int, ...]]]  # section name -> (dtype, shape), in file order
Request = tuple[str, "int | None"]  # what a restore generator asks for: (section, rows per chunk or None: all)
RestoreSteps = Generator[Request, npt.NDArray[Any], Any]  # see restore()


def collect(name: str, layout: Layout) -> Generator[Request, npt.NDArray[Any], npt.NDArray[Any]]:
    """Restore steps (``yield from``) that gather the whole section ``name``: one array when the source gives it
    whole (a file), else the parts it arrives in (a pickle stream) copied into one array."""
    dtype, shape = layout[name]
    out: npt.NDArray[Any] | None = None
    got = 0
    while got < shape[0]:
        chunk = yield (name, None)
        if out is None and len(chunk) == shape[0]:
            return chunk
        if out is None:
            out = np.empty(shape, dtype)
        out[got:got + len(chunk)] = chunk
        got += len(chunk)
    return out if out is not None else np.empty(shape, dtype)


def feed(name: str, layout: Layout, chunk_bytes: int,
         consume: Callable[[npt.NDArray[Any]], object]) -> Generator[Request, npt.NDArray[Any], None]:
    """Restore steps (``yield from``) that hand the section ``name`` to ``consume`` a chunk at a time (about
    ``chunk_bytes`` each from a file; a pickle stream's parts as they come)."""
    dtype, shape = layout[name]
    rows = max(1, chunk_bytes // max(1, row_bytes(dtype, shape)))
    got = 0
    while got < shape[0]:
        chunk = yield (name, rows)
        consume(chunk)
        got += len(chunk)


def row_bytes(dtype: np.dtype[Any], shape: Sequence[int]) -> int:
    """Bytes of one leading-axis row of an array of ``dtype`` and ``shape``."""
    return dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))


def restore(reader: Reader, steps: RestoreSteps) -> Any:
    """Run an index's restore steps (a generator shared with the streamed pickle, _pickling.py) on an open
    container: each request ``(section, rows)`` is answered with the whole section (``rows`` None, read in place)
    or its next chunk of ``rows`` rows; a section's checksum is verified before its last chunk is handed over.
    Returns what the steps return (the index)."""
    chunks: dict[str, tuple[Iterator[npt.NDArray[Any]], list[int]]] = {}
    try:
        name, rows = next(steps)
        while True:
            if name not in reader.sections:
                raise reader._fail(f"corrupted file (section {name!r} missing)")
            if rows is None:
                data = reader.read(name)
            else:
                it, left = chunks.setdefault(name, (reader.read_chunks(name, rows), [reader.sections[name][2][0]]))
                chunk: npt.NDArray[Any] | None = next(it, None)
                if chunk is None or len(chunk) > left[0]:
                    raise reader._fail(f"corrupted file (section {name!r} is shorter than its header says)")
                left[0] -= len(chunk)
                data = chunk
                if left[0] == 0 and next(it, None) is not None:  # verifies the checksum (raises on a mismatch)
                    raise reader._fail(f"corrupted file (section {name!r})")
            name, rows = steps.send(data)
    except StopIteration as done:
        return done.value


class Reader:
    """A container opened for reading: ``kind_version``, ``meta`` (without the section list) and the sections'
    places, all checked against the file size; ``read(name)`` / ``view(name)`` give the arrays."""

    def __init__(self, source: str | os.PathLike[str] | IO[bytes], kind: str, versions: Sequence[int], *,
                 mapped: bool = False, where: str | None = None) -> None:
        """``source``: a path, or a seekable binary file object (e.g. a pickle's bytes in a BytesIO; not with
        ``mapped``)."""
        if isinstance(source, (str, os.PathLike)):
            self.where = where or os.fspath(source)
            self._f: IO[bytes] = open(source, "rb")  # noqa: SIM115  # closed by close() / the with block
        else:
            assert not mapped, "mapped=True needs a path"
            self.where, self._f = where or "<bytes>", source
        self.mapped_file: _core._MappedFile | None = None  # mapped=True: check() raises once the file changed
        try:
            self._open(kind, versions, mapped)
        except BaseException:
            self.close()
            raise

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{self.where}: {what}")

    def _open(self, kind: str, versions: Sequence[int], mapped: bool) -> None:
        f = self._f
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:8] != MAGIC:
            raise self._fail(f"not a simkern {kind} file")
        _, version, kind_version, got_kind, meta_len, n_sections, crc = _HEAD.unpack(head)
        if any(head[48:]):
            raise self._fail("corrupted header (reserved bytes)")
        if version != CONTAINER_VERSION:
            raise self._fail(f"unsupported container version {version} (this build reads {CONTAINER_VERSION})")
        if got_kind.rstrip(b"\0") != kind.encode():
            held = got_kind.rstrip(bytes(1)).decode(errors="replace")
            raise self._fail(f"not a simkern {kind} file (it holds a {held!r})")
        if kind_version not in versions:
            raise self._fail(f"unsupported {kind} version {kind_version} (this build reads "
                             f"{', '.join(map(str, versions))})")
        if meta_len > size or n_sections > 64:
            raise self._fail("corrupted header")
        body = f.read(meta_len)
        if len(body) != meta_len or zlib.crc32(body, zlib.crc32(head[:44])) != crc:
            raise self._fail("header checksum mismatch (the file is corrupted)")
        if any(f.read(_pad(meta_len))):
            raise self._fail("corrupted header (padding)")
        try:
            meta = json.loads(body)
            specs = meta.pop("sections")
            assert isinstance(meta, dict) and isinstance(specs, list) and len(specs) == n_sections
        except (ValueError, KeyError, AssertionError, TypeError):
            raise self._fail("corrupted header (meta)") from None
        self.kind_version, self.meta = int(kind_version), meta
        offset = _HEAD.size + meta_len + _pad(meta_len)
        self.sections: dict[str, tuple[int, np.dtype[Any], tuple[int, ...], int]] = {}
        for spec in specs:
            try:
                name, dtype, shape = section_spec(spec)
            except ValueError as e:
                raise self._fail(f"corrupted header ({e})") from None
            nbytes = dtype.itemsize
            for s in shape:
                nbytes *= s
                if nbytes > size:
                    raise self._fail(f"truncated or corrupted file (section {name!r} does not fit)")
            if offset + _SECTION.size + nbytes > size:
                raise self._fail(f"truncated file (section {name!r})")
            f.seek(offset)
            sec_head = f.read(_SECTION.size)
            tag, length, sec_crc = _SECTION.unpack(sec_head)
            if tag.rstrip(b"\0") != name.encode() or length != nbytes or any(sec_head[44:]) or (not nbytes and sec_crc):
                raise self._fail(f"corrupted file (section {name!r})")
            f.seek(offset + _SECTION.size + nbytes)
            if any(f.read(_pad(nbytes))):  # every byte of the file is checked: padding must be zero
                raise self._fail(f"corrupted file (padding after section {name!r})")
            self.sections[name] = (offset + _SECTION.size, dtype, shape, sec_crc)
            offset += _SECTION.size + nbytes + _pad(nbytes)
        f.seek(offset)
        trailer = f.read(_TRAILER.size)
        if len(trailer) != _TRAILER.size or _TRAILER.unpack(trailer) != (_END, offset + _TRAILER.size) \
                or offset + _TRAILER.size != size:
            raise self._fail("truncated or corrupted file (bad trailer)")
        if mapped:  # read-only and private, with the library's SIGBUS guard (see _core._MappedFile)
            self.mapped_file = _core._MappedFile(self.where)
            if self.mapped_file.size != size:
                raise self._fail("the file changed while it was being opened")

    @property
    def layout(self) -> Layout:
        """Each section's (dtype, shape), in file order."""
        return {name: (dtype, shape) for name, (_, dtype, shape, _) in self.sections.items()}

    def read(self, name: str) -> npt.NDArray[Any]:
        """The section as a new array, read in place chunk by chunk, its checksum verified."""
        offset, dtype, shape, crc = self.sections[name]
        out = np.empty(shape, dtype)
        raw = out.reshape(-1).view(np.uint8)
        self._f.seek(offset)
        got, done = 0, 0
        while done < raw.size:
            n = self._f.readinto(memoryview(raw[done:done + _CHUNK]))  # type: ignore[attr-defined,arg-type]  # as in read_chunks
            if not n:
                raise self._fail(f"truncated file (section {name!r})")
            got = zlib.crc32(raw[done:done + n], got)  # type: ignore[arg-type]  # as above
            done += n
        if got != crc:
            raise self._fail(f"checksum mismatch in section {name!r} (the file is corrupted)")
        return out

    def read_chunks(self, name: str, rows: int) -> Iterator[npt.NDArray[Any]]:
        """The section ``rows`` leading-axis rows at a time, through one reused buffer (the consumer copies what
        it keeps); the checksum is verified after the last chunk (a mismatch raises then)."""
        offset, dtype, shape, crc = self.sections[name]
        total = shape[0] if shape else 1
        row_shape = shape[1:]
        step_bytes = row_bytes(dtype, shape)
        buf = np.empty((max(1, min(rows, total)),) + row_shape, dtype)
        got = 0
        for start in range(0, total, rows):
            count = min(rows, total - start)
            chunk = buf[:count]
            raw = chunk.reshape(-1).view(np.uint8)
            self._f.seek(offset + start * step_bytes)
            if self._f.readinto(memoryview(raw)) != raw.size:  # type: ignore[attr-defined,arg-type]  # files and BytesIO have it; an ndarray buffer
                raise self._fail(f"truncated file (section {name!r})")
            got = zlib.crc32(raw, got)  # type: ignore[arg-type]  # as above
            yield chunk
        if got != crc:
            raise self._fail(f"checksum mismatch in section {name!r} (the file is corrupted)")

    def view(self, name: str) -> npt.NDArray[Any]:
        """The section as a read-only view of the mapped file (``mapped=True``); checksum verified for sections up
        to ``_MAPPED_VERIFY_LIMIT`` bytes."""
        assert self.mapped_file is not None, "view() needs mapped=True"
        offset, dtype, shape, crc = self.sections[name]
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(memoryview(self.mapped_file), dtype, count, offset).reshape(shape)
        if arr.nbytes <= _MAPPED_VERIFY_LIMIT and zlib.crc32(arr.reshape(-1).view(np.uint8)) != crc:  # type: ignore[arg-type]
            raise self._fail(f"checksum mismatch in section {name!r} (the file is corrupted)")
        return arr

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_container(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with the container's magic (older per-index formats do not); OSError if it
    cannot be read."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """The kind named in a container file's header; None for anything else (or an unreadable file)."""
    try:
        if not is_container(path):
            return None
        with open(path, "rb") as f:
            return f.read(_HEAD.size)[16:32].rstrip(b"\0").decode(errors="replace")
    except OSError:
        return None


def renamed(prefix: str, sections: Sequence[SectionSpec]) -> list[SectionSpec]:
    """``sections`` under the names ``prefix + name`` (an index embedding another one's sections)."""
    return [SectionSpec(prefix + s.name, s.dtype, s.shape, s.chunks) for s in sections]


def prefixed(prefix: str, steps: RestoreSteps) -> RestoreSteps:
    """Restore steps asking for ``prefix + name`` where ``steps`` ask for ``name`` (the inverse of ``renamed``)."""
    try:
        name, rows = next(steps)
        while True:
            name, rows = steps.send((yield (prefix + name, rows)))
    except StopIteration as done:
        return done.value


def sub_layout(prefix: str, layout: Layout) -> Layout:
    """The sections of ``layout`` named ``prefix + name``, under ``name``."""
    return {k[len(prefix):]: v for k, v in layout.items() if k.startswith(prefix)}
