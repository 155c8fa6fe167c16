"""Skip markers shared by several test files.

``needs_kernel``: the test runs the fused CPU kernel (network.impl 'fused'). Whether the
kernel builds here is asked when the first such test runs (``tests/conftest.py``), not
when the tests are collected: collecting compiles nothing.
"""

import pytest

needs_kernel = pytest.mark.needs_kernel
