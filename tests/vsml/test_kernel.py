"""The fused CPU kernel: its builds, its cache, its failure modes, vmap and gradients."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.marks import needs_kernel
from tests.tiny import PRESET, TINY_SUM
from vsml_jax.vsml import kernel
from vsml_jax.vsml.cell import CellConfig, CellState, init_cell_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _problem(A=20, B=3, seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 5)
    cfg = CellConfig()
    params = init_cell_params(k[0], cfg)
    rows = params.w_in[:8].T @ jax.random.normal(k[1], (8, A))
    cols = params.w_in[8:].T @ jax.random.normal(k[2], (8, B))
    state = CellState(
        h=0.5 * jax.random.normal(k[3], (16, B, A)), c=jax.random.normal(k[4], (16, B, A))
    )
    return params, state, rows, cols


@needs_kernel
def test_vmap_grad_and_non_finite_values():
    params, state, rows, cols = _problem()
    states = jax.tree.map(lambda x: jnp.stack([x, -x, 2 * x]), state)
    fused = jax.vmap(kernel.lstm_update_grid_fused, in_axes=(None, 0, None, None))
    ref = jax.vmap(kernel._reference, in_axes=(None, 0, None, None))
    np.testing.assert_allclose(
        jax.jit(fused)(params, states, rows, cols).h,
        jax.jit(ref)(params, states, rows, cols).h,
        atol=1e-6,
    )

    def loss(update):
        return lambda p, s: jnp.sum(update(p, s, rows, cols).h ** 2)

    g_fused = jax.jit(jax.grad(loss(kernel.lstm_update_grid_fused), argnums=(0, 1)))(params, state)
    g_ref = jax.jit(jax.grad(loss(kernel._reference), argnums=(0, 1)))(params, state)
    for a, b in zip(jax.tree.leaves(g_fused), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # a NaN or an infinity in the state stays visible (the ES checks fitness for it)
    bad = state.replace(h=state.h.at[3, 1, 2].set(jnp.nan), c=state.c.at[0, 0, 0].set(jnp.inf))
    out = jax.jit(kernel.lstm_update_grid_fused)(params, bad, rows, cols)
    assert np.isnan(out.h[:, 1, 2]).all() and not np.isfinite(out.c[0, 0, 0])


@needs_kernel
def test_gates_are_within_a_few_float32_ulps_of_float64():
    # zero recurrent weights: every cell's gate inputs are its row + column term, swept
    # over [-30, 30] (saturated and linear regions, and exact zeros)
    A, B = 784, 3
    k = jax.random.split(jax.random.PRNGKey(7), 3)
    params = init_cell_params(k[0], CellConfig())
    params = params.replace(w_h=jnp.zeros_like(params.w_h), b=jnp.zeros_like(params.b))
    rows = jax.random.uniform(k[1], (64, A), minval=-30.0, maxval=30.0).at[:, :16].set(0.0)
    cols = jnp.zeros((64, B)).at[:, 1].set(0.5)
    c = jax.random.uniform(k[2], (16, B, A), minval=-5.0, maxval=5.0)
    state = CellState(h=jnp.ones((16, B, A)), c=c)
    z = np.asarray(rows, np.float64)[:, None, :] + np.asarray(cols, np.float64)[:, :, None]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    c64 = sig(z[16:32]) * np.asarray(c, np.float64) + sig(z[:16]) * np.tanh(z[32:48])
    h64 = sig(z[48:]) * np.tanh(c64)
    for update in (kernel.lstm_update_grid_fused, kernel._reference):
        out = jax.jit(update)(params, state, rows, cols)
        assert np.abs(out.h - h64).max() < 1e-6, update
        assert np.abs(out.c - c64).max() < 2e-6, update


def test_the_platform_lowered_for_picks_the_kernel_or_the_fast_path(monkeypatch):
    """The kernel is chosen by the platform a program is lowered for, not the process's
    backend: lowered for a TPU (as benchmarks/plan.py does on a CPU host) the tick is
    XLA's fast path and nothing is built or checked; lowered for a CPU it is the kernel,
    or the one line that says why not."""
    monkeypatch.setattr(kernel, "_load", lambda: "no kernel here")
    # shapes no other test lowers: jax caches a jaxpr's lowering, and with it the check
    tick = jax.jit(kernel.lstm_update_grid_fused).trace(*_problem(A=11, B=2))
    tpu = tick.lower(lowering_platforms=("tpu",)).as_text()
    assert kernel.TARGET not in tpu and "custom_call" not in tpu
    with pytest.raises(kernel.KernelUnavailable, match="^no kernel here$"):
        tick.lower()
    params = init_cell_params(jax.random.PRNGKey(0), CellConfig(hidden=4))
    small = CellState(h=jnp.zeros((4, 3, 20)), c=jnp.zeros((4, 3, 20)))
    tick = jax.jit(kernel.lstm_update_grid_fused).trace(
        params, small, jnp.zeros((16, 20)), jnp.zeros((16, 3))
    )
    tick.lower(lowering_platforms=("tpu",))
    with pytest.raises(ValueError, match="^network.impl 'fused' needs cell.hidden 16, got 4$"):
        tick.lower()


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    return subprocess.run(
        ["timeout", "-s", "KILL", "240", sys.executable, "-c", code],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
    )


EPISODE = """
import jax
import vsml_jax.vsml.kernel as kernel
{patch}
from vsml_jax.episode import run_episode
from vsml_jax.learners.base import TaskSpec
from vsml_jax.learners.vsml import vsml
from vsml_jax.vsml.network import NetworkConfig
learner = vsml(NetworkConfig(impl="{impl}"))
mp = learner.meta_init(jax.random.PRNGKey(0), TaskSpec(20, 3))
xs = jax.random.normal(jax.random.PRNGKey(1), (5, 20))
ys = jax.random.randint(jax.random.PRNGKey(3), (5,), 0, 3)
out = jax.jit(lambda mp: run_episode(learner, mp, xs, ys, jax.random.PRNGKey(2), 3))(mp)
print("loss", float(out.loss.sum()))
"""


# one fused tick in a fresh process (the kernel's cache is per process)
TICK = """
import jax
import vsml_jax.vsml.kernel as kernel
{patch}
from tests.vsml.test_kernel import _problem
print("h", float(jax.jit(kernel.lstm_update_grid_fused)(*_problem()).h.sum()))
"""


@pytest.mark.skipif(not kernel._has_avx512(), reason="without AVX-512 no compiler is asked for")
def test_without_a_compiler_fused_is_one_clear_error(tmp_path):
    env = {"CXX": str(tmp_path / "no-such-g++"), "VSML_KERNEL_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "experiments.es_mnist", "--config", str(PRESET)]
    sets = [*TINY_SUM, "network.impl=fused", f"out_dir={tmp_path}"]
    cmd += [x for o in sets for x in ("--set", o)]
    fused = subprocess.run(
        ["timeout", "-s", "KILL", "240", *cmd],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu", **env),
        capture_output=True,
        text=True,
    )
    assert fused.returncode == 2
    assert fused.stderr.strip().splitlines()[-1] == (
        f"error: network.impl 'fused' needs a C++ compiler to build its CPU kernel, and "
        f"'{env['CXX']}' is not on PATH: install g++ (or set CXX), or use network.impl 'fast'"
    )
    auto = _run(EPISODE.format(impl="auto", patch=""), env)  # the default needs no compiler
    assert auto.returncode == 0, auto.stderr
    assert not (tmp_path / "cache").exists()


def test_without_avx512_fused_says_so_and_builds_nothing(tmp_path):
    env = {"VSML_KERNEL_CACHE": str(tmp_path)}
    fused = _run(TICK.format(patch="kernel._has_avx512 = lambda: False"), env)
    assert fused.returncode != 0 and kernel.NO_AVX512 in fused.stderr
    assert not list(tmp_path.iterdir())


@needs_kernel
def test_an_unwritable_cache_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    env = {"VSML_KERNEL_CACHE": str(tmp_path / "file" / "cache")}  # under a file
    fused = _run(TICK.format(patch=""), env)
    assert fused.returncode != 0
    assert "set VSML_KERNEL_CACHE to a writable folder, or use network.impl 'fast'" in fused.stderr


@pytest.fixture
def tiny_kernel(tmp_path, monkeypatch):
    """A cache whose 'kernel' is a one-line C++ library exporting the kernel's symbol."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("needs a C++ compiler")
    src = tmp_path / "tiny.cc"
    src.write_text(f'extern "C" int {kernel.SYMBOL}(void) {{ return 7; }}\n')
    monkeypatch.setattr(kernel, "SOURCE", src)
    monkeypatch.setenv("VSML_KERNEL_CACHE", str(tmp_path / "cache"))
    return ("-shared", "-fPIC", "-w")


def test_a_cached_library_is_reused_and_no_temporary_file_is_left(tiny_kernel, monkeypatch):
    lib = kernel.cached_library(tiny_kernel)
    built = lib.stat().st_mtime_ns
    assert sorted(p.name for p in lib.parent.iterdir()) == [lib.name, f"{lib.name}.sha256"]
    monkeypatch.setattr(kernel, "build", lambda *a: pytest.fail("rebuilt a verified library"))
    assert kernel.open_library(tiny_kernel)[kernel.SYMBOL]() == 7
    assert lib.stat().st_mtime_ns == built


def test_a_truncated_cached_library_is_never_loaded_but_rebuilt(tiny_kernel, monkeypatch):
    assert kernel.open_library(tiny_kernel)[kernel.SYMBOL]() == 7
    (lib,) = kernel.cache_dir().glob("lstm_grid-*.so")
    whole = lib.read_bytes()
    assert kernel._stamp(lib).read_text().strip() == kernel._sha256(lib)
    # what a full disk or a killed copy leaves (a new file: this process has the old
    # one mapped, and truncating a mapped library in place bus-errors its holder)
    (kernel.cache_dir() / "cut").write_bytes(whole[:4000])
    os.replace(kernel.cache_dir() / "cut", lib)
    loaded = []
    real = kernel.ctypes.CDLL
    monkeypatch.setattr(kernel.ctypes, "CDLL", lambda p: loaded.append(p) or real(p))
    assert kernel.open_library(tiny_kernel)[kernel.SYMBOL]() == 7
    assert lib.read_bytes() == whole and len(loaded) == 1  # rebuilt before the one load
    lib.unlink()  # a stamp without its library
    assert kernel.open_library(tiny_kernel)[kernel.SYMBOL]() == 7


def test_a_cached_library_without_the_symbol_is_rebuilt_or_one_line(tiny_kernel, tmp_path):
    path = kernel.cached_library(tiny_kernel)
    other = tmp_path / "other.cc"
    other.write_text('extern "C" int something_else(void) { return 1; }\n')
    kernel.SOURCE, good = other, kernel.SOURCE
    kernel.build(path, tiny_kernel)  # a whole, stamped library, but not the kernel
    kernel.SOURCE = good
    assert kernel.open_library(tiny_kernel)[kernel.SYMBOL]() == 7
    kernel.SOURCE = other  # a build that cannot help: one line
    with pytest.raises(kernel.KernelUnavailable, match=r"\.so does not export VsmlLstmGrid \("):
        kernel.open_library(tiny_kernel)
