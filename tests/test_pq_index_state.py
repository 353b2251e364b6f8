"""PQIndex as a state machine: add / interrupted add / filtered search / save / load / pickle against a plain
model (the list of added vectors); every search must equal the NumPy top-k of the float ADC scores of the model's
codes (ties: smaller id first)."""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
import simkern
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from reference import topk_ref
from simkern import _core

DIM, M = 8, 4


class PQIndexMachine(RuleBasedStateMachine):
    @initialize(metric=st.sampled_from(["l2", "ip"]), nbits=st.sampled_from([4, 8]),
                keep=st.booleans(), opq=st.booleans())
    def setup(self, metric, nbits, keep, opq):
        self.rng = np.random.default_rng(0)
        train = self.rng.standard_normal((300, DIM)).astype(np.float32)
        self.index = simkern.PQIndex(DIM, M, nbits, metric, keep_vectors=keep, opq=opq).train(train, iters=3)
        self.model = np.zeros((0, DIM), np.float32)

    def _vectors(self, n):
        x = self.rng.standard_normal((n, DIM)).astype(np.float32)
        if n > 2 and self.rng.random() < 0.3:
            x[1:] = x[0]  # duplicates: ties broken by id
        return x

    @rule(n=st.integers(0, 70))
    def add(self, n):
        x = self._vectors(n)
        self.index.add(x)
        self.model = np.concatenate([self.model, x])

    @rule(n=st.integers(1, 70), where=st.sampled_from(["encode", "publish"]))
    def interrupted_add(self, n, where):
        """A KeyboardInterrupt inside add (while encoding, or just before the new state is published): the index
        keeps its old contents."""
        x = self._vectors(n)
        real_encode = _core._pq_encode
        real_snapshot = simkern.pq_index._Snapshot

        def encode(*args):
            if where == "encode":
                raise KeyboardInterrupt
            return real_encode(*args)

        def snapshot(*args):
            raise KeyboardInterrupt

        _core._pq_encode = encode
        if where == "publish":
            simkern.pq_index._Snapshot = snapshot
        try:
            self.index.add(x)
            raise AssertionError("not interrupted")
        except KeyboardInterrupt:
            pass
        finally:
            _core._pq_encode = real_encode
            simkern.pq_index._Snapshot = real_snapshot

    @rule(k=st.integers(1, 12), filtered=st.booleans(), data=st.data())
    def search(self, k, filtered, data):
        q = self.rng.standard_normal((3, DIM)).astype(np.float32)
        n = len(self.model)
        allowed = None
        flt = None
        if filtered:
            ids = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=20, unique=True)) if n else []
            flt = np.array(ids, np.int64)
            allowed = [flt] * 3
        scores, ids = self.index.search(q, k, filter=flt)
        codes = self.index.pq.encode(self.index._to_pq_space(self.model)) if n else None
        if n:
            adc = self.index.pq.adc(self.index._to_pq_space(q), codes)
            smaller = self.index.metric == "l2"
            _, want = topk_ref(-adc if smaller else adc, k, allowed)
        else:
            want = np.full((3, k), -1, np.int64)
        np.testing.assert_array_equal(ids, want)

    @rule(how=st.sampled_from(["pickle", "save"]))
    def round_trip(self, how):
        if how == "pickle":
            self.index = pickle.loads(pickle.dumps(self.index))
        else:
            path = os.path.join(tempfile.mkdtemp(), "i.pqi")
            self.index.save(path)
            self.index = simkern.PQIndex.load(path)

    @invariant()
    def same_contents(self):
        if hasattr(self, "index"):
            assert len(self.index) == len(self.model)
            if len(self.model):
                np.testing.assert_array_equal(self.index.codes, self.index.pq.encode(
                    self.index._to_pq_space(self.model)))


PQIndexMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_pq_index_state_machine = PQIndexMachine.TestCase
