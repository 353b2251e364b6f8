"""Shared fixtures: hypothesis profiles and the ISA fixture that runs kernel tests once per available level."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import simkern

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, print_blob=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ISAS = simkern.available_isas()


@pytest.fixture(scope="module", params=ISAS)
def isa(request):
    """Run the test module's kernel tests at each ISA level this CPU has (module-scoped: hypothesis-safe)."""
    with simkern.max_isa(request.param) as active:
        assert active == request.param
        yield active
