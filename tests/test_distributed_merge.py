"""simkern.distributed's pure parts, without Ray: the exact merge of per-shard top-k lists and the manifest checks
(they run everywhere: the release check and the sanitizer pass, which do not install Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simkern import distributed


@settings(deadline=None)
@given(nq=st.integers(1, 4), n=st.integers(0, 60), shards=st.integers(1, 5), k=st.integers(1, 20),
       smaller=st.booleans(), ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_merge_equals_the_global_top_k(nq, n, shards, k, smaller, ties, seed):
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 4, (nq, n)) if ties else rng.standard_normal((nq, n))).astype(np.float32)
    ids = rng.permutation(10 * n + 1)[:n].astype(np.int64)
    part_of = rng.integers(0, shards, n)
    s_parts, i_parts = [], []
    for p in rng.permutation(shards):  # any order of replies
        cols = np.flatnonzero(part_of == p)
        s, i = scores[:, cols], np.broadcast_to(ids[cols], (nq, len(cols)))
        order = np.lexsort((i, s if smaller else -s), axis=1)[:, :k]  # each shard's own top-k, padded
        s, i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
        pad = k - s.shape[1]
        s_parts.append(np.pad(s, ((0, 0), (0, pad)), constant_values=np.inf if smaller else -np.inf))
        i_parts.append(np.pad(i, ((0, 0), (0, pad)), constant_values=-1))
    got_s, got_i = distributed._merge_top_k(s_parts, i_parts, k, smaller)
    assert got_s.shape == got_i.shape == (nq, k) and got_s.dtype == np.float32
    for row in range(nq):  # reference: every candidate sorted by (score in the metric's order, id)
        order = sorted(range(n), key=lambda j: (scores[row, j] if smaller else -scores[row, j], ids[j]))[:k]
        want_i = np.full(k, -1, np.int64)
        want_i[:len(order)] = ids[order]
        np.testing.assert_array_equal(got_i[row], want_i)
        np.testing.assert_array_equal(got_s[row][:len(order)], scores[row, order])


def _manifest(**changes):
    m = {"format": "simkern-shards", "version": 1, "kind": "PQIndex", "metric": "l2", "dim": 16,
         "shards": [{"shard": 0, "file": "shard-00000-ab.simk", "sha256": "0" * 64, "count": 3, "id_min": 0,
                     "id_max": 2, "ids_file": "shard-00000-ab.ids.npy", "ids_sha256": "0" * 64}]}
    shard = dict(m["shards"][0], **changes.pop("shard", {}))
    m.update(changes, shards=[shard])
    return json.dumps(m).encode()


def test_manifest_checks():
    assert distributed._parse_manifest(_manifest(), "here")["kind"] == "PQIndex"
    bad = [b"{", b"[]", _manifest(format="other"), _manifest(version=2), _manifest(kind="Flat"),
           _manifest(metric="hamming"), _manifest(dim=0), _manifest(dim="16"), _manifest(shard={"count": "3"}),
           _manifest(shard={"id_max": None}),
           _manifest(shard={"file": "../outside.simk"}), _manifest(shard={"file": "/etc/passwd"}),
           _manifest(shard={"ids_file": "a/../../b"}), _manifest(shard={"file": "s3://bucket/x"})]
    for data in bad:
        with pytest.raises(ValueError, match="manifest"):
            distributed._parse_manifest(data, "here")


def test_without_ray_the_calls_name_the_extra(monkeypatch):
    import importlib
    real = importlib.import_module

    def no_ray(name, *args):
        if name.startswith("ray"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_ray)
    with pytest.raises(ImportError, match=r"simkern\[ray\]"):
        distributed.ShardedIndex.open("anywhere")
