"""Skip markers shared by several test files."""

import pytest

from vsml_jax.vsml import kernel

# the fused CPU kernel (network.impl 'fused') builds and runs here
needs_kernel = pytest.mark.skipif(
    not kernel.available(), reason="the fused kernel needs a C++ compiler and an AVX-512 CPU"
)
