"""Shared fixtures: hypothesis profiles and the ISA fixture that runs kernel tests once per available level."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# The sanitizer pass of .ci/run (step 5): the same tests with fewer examples each, as they also run at "ci" in steps
# 1 and 2; ASan makes every example ~3x slower, and the CI budget is 20 minutes.
settings.register_profile("ci-sanitizer", parent=settings.get_profile("ci"), max_examples=30)
# the release check of .ci/run (step 2): the zig-built wheel on 30 examples per property; step 1 runs the same
# derandomized properties on 100
settings.register_profile("ci-release", parent=settings.get_profile("ci"), max_examples=30)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

from levels import KERNEL_LEVELS, kernel_level  # noqa: E402


@pytest.fixture(scope="module", params=KERNEL_LEVELS)
def isa(request):
    """Run the test module's kernel tests at each ISA level this CPU has, and at "avx512-own" (the avx512 level
    with its own kernels, see levels.py); module-scoped: hypothesis-safe. Yields the active ISA name."""
    with kernel_level(request.param) as active:
        assert active == request.param.removesuffix("-own")
        yield active


def _misaligned_arrays(value, path="argument"):
    """(path, array) for every misaligned ndarray in an argument (lists and tuples looked into)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return [(path, value)] if not value.flags.aligned else []
    if isinstance(value, (list, tuple)):
        return [hit for i, v in enumerate(value) for hit in _misaligned_arrays(v, f"{path}[{i}]")]
    return []


@pytest.fixture
def aligned_core(monkeypatch):
    """Make every array-taking entry point of simkern._core (and of _FDEPlan) fail the test when it is handed a
    misaligned array (a view at an odd byte offset): the C++ kernels load whole elements, which is undefined
    behaviour there (UBSan), so the Python layer must copy such views first. Yields the names called."""
    from simkern import _core

    called = []

    def wrap(name, fn, method=False):
        def checked(*args, **kwargs):
            bad = _misaligned_arrays(list(args[1:] if method else args) + list(kwargs.values()))
            assert not bad, f"_core.{name} got a misaligned array ({bad[0][0]})"
            called.append(name)
            return fn(*args, **kwargs)
        return checked

    for name in dir(_core):
        fn = getattr(_core, name)
        if name.startswith("_") and not name.startswith("__") and callable(fn) and not isinstance(fn, type):
            monkeypatch.setattr(_core, name, wrap(name, fn))
    for name in ("encode", "encode_list"):
        monkeypatch.setattr(_core._FDEPlan, name, wrap(f"_FDEPlan.{name}", getattr(_core._FDEPlan, name), True))
    yield called


@pytest.fixture
def misaligned():
    """misaligned(x, writeable=False): a copy of ``x`` viewed at an odd byte offset (``flags.aligned`` False), as
    ``np.frombuffer(b"\\0" + data, dtype, offset=1)`` makes."""
    import numpy as np

    def make(x, writeable=False):
        x = np.ascontiguousarray(x)
        raw = b"\0" + x.tobytes()
        view = np.frombuffer(bytearray(raw) if writeable else raw, x.dtype, offset=1).reshape(x.shape)
        assert not view.flags.aligned or x.itemsize == 1
        return view

    return make
