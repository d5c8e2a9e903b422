"""Kernels on the bounds that select their paths: no hang, and golden == functional exactly.

Issue #9 item 1: with ``max|x << f| == 2**15 - 1`` the shift-add adders once took partial sums
of ``32767 // 32768 == 0`` terms and never advanced. The reproducer runs in a subprocess under a
timeout (a numba loop cannot be interrupted in-process); the properties drive every datapath's
functional kernels with data whose maximum sits exactly on each bound that selects a path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from shiftsim.datapath.shift_add import partial_group

REPRO = textwrap.dedent(
    """
    import numpy as np
    from shiftsim import Conv2d, FixedFormat, ShiftAddDatapath, ShiftCode
    dp = ShiftAddDatapath(act=FixedFormat(16, 0, signed=True))
    code = ShiftCode(index=np.ones((1, 1, 1, 1, 2), np.int8), scale=np.float64(1.0),
                     n_codebooks=2, bits=4)
    print(int(dp.run(Conv2d(1, 1, 1), code, np.full((1, 1, 1, 1), 32767)).y_raw[0, 0, 0, 0]))
    """
)


def test_issue9_int16_boundary_reproducer_returns():
    # index 1 in both codebooks: shifts 0 and 1, so 32767 + (32767 >> 1) = 49150 (by hand)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", REPRO], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["49150"]


@pytest.mark.parametrize(
    ("dtype", "x_max", "group"),
    [
        (np.int16, 0, 32768),
        (np.int16, 1, 16384),
        (np.int16, 32766, 1),
        (np.int16, 32767, 1),  # the hang: 32767 // 32768 == 0 before the fix
        (np.int16, 16383, 2),
        (np.int64, (1 << 62) - 1, 2),
        (np.int64, (1 << 63) - 1, 1),
    ],
)
def test_partial_group_is_the_largest_exact_group(dtype, x_max, group):
    assert partial_group(dtype, x_max) == group
    # by definition: group terms in [-(x_max + 1), x_max] fit, group + 1 do not
    half = 1 << (np.iinfo(dtype).bits - 1)
    assert group * (x_max + 1) <= half < (group + 1) * (x_max + 1)


@pytest.mark.parametrize(
    ("dtype", "x_max"), [(np.int16, 32768), (np.int16, -1), (np.int64, 1 << 63)]
)
def test_partial_group_refuses_a_term_that_does_not_fit(dtype, x_max):
    with pytest.raises(ValueError, match="x_max"):
        partial_group(dtype, x_max)
