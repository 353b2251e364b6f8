"""The kernel levels tests run at: every ISA level this CPU has, plus "avx512-own" where AVX-512 exists.

At the avx512 level the dispatcher runs some avx2 kernels where the 512-bit ones are not faster on this CPU
(dispatch.cpp; kernel_names() shows which). "avx512-own" runs the avx512 level with its own kernels only
(_core._set_own_kernels), so that every 512-bit kernel stays tested on the machines that have AVX-512, whatever
the dispatcher chose there.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import simkern
from simkern import _core

ISAS = simkern.available_isas()
# The ASan + UBSan build (.ci/run step 5, tools/sanitize/staged.py sets this): kernels run ~5-10x slower, so the
# tests that time long calls (interrupts, GIL release, fork during add) take smaller inputs there, still long enough
# to be interrupted mid-call.
SANITIZED = os.environ.get("SIMKERN_STAGED_SANITIZERS") == "1"
KERNEL_LEVELS = ISAS + (["avx512-own"] if "avx512" in ISAS else [])


@contextmanager
def kernel_level(label: str):
    """Run the block at ``label`` (an ISA name, or "avx512-own"); yields the active ISA name."""
    own = label.endswith("-own")
    previous = _core._own_kernels()
    with simkern.max_isa(label.removesuffix("-own")) as active:
        _core._set_own_kernels(own)
        try:
            yield active
        finally:
            _core._set_own_kernels(previous)
