"""Shared test configuration: hypothesis profiles and seeded randomness.

Profiles (select with HYPOTHESIS_PROFILE): ``ci`` (default), ``nojit`` (fewer examples, for
the run with NUMBA_DISABLE_JIT=1), ``thorough`` (many examples, for local runs).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False)
settings.register_profile("ci", max_examples=100, **_common)
settings.register_profile("nojit", max_examples=25, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "jit_only: too slow without the JIT; skipped under nojit")
    config.addinivalue_line("markers", "slow: long-running; deselect with -m 'not slow'")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test's randomness goes through it."""
    return np.random.default_rng(20171121)
