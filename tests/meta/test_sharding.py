"""Sharded ES generations equal unsharded ones: 2 local processes of 2 emulated devices each."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEST_XLA_FLAGS, xla_flags
from tests.meta import es_worker
from vsml_jax.runtime.devices import check_population

ROOT = Path(__file__).resolve().parents[2]


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = xla_flags(f"--xla_force_host_platform_device_count={devices}")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def _worker(out, mesh, devices, timeout=240, **extra):
    cmd = [
        "timeout",
        "-s",
        "KILL",
        str(timeout),
        sys.executable,
        "-m",
        "tests.meta.es_worker",
        str(out),
        "--mesh",
        mesh,
    ]
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(devices, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc):
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    return out


def _assert_same(a, b):
    # both runs start from the same mean, and ES moves it far more than the tolerance
    np.testing.assert_array_equal(a["mean0"], b["mean0"])
    assert np.abs(b["mean"] - b["mean0"]).max() > 100 * 2e-5
    # the fitness of every generation agrees to float32 reduction-order noise; the
    # means agree a little less tightly, as Adam divides by the tiny second moment
    np.testing.assert_allclose(a["meta_loss"], b["meta_loss"], rtol=1e-6)
    np.testing.assert_allclose(a["mean"], b["mean"], atol=2e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sharded_over_2_processes_equals_one_device(tmp_path):
    """The same ES generations on one device (in this process) and over the 4 devices of 2
    ``jax.distributed`` processes, each sharding its half over its own 2 devices."""
    port = _free_port()
    multi = [
        _worker(
            tmp_path / f"multi{i}.npz",
            "all",
            2,
            timeout=180,
            VSML_DISTRIBUTED="1",
            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            VSML_NUM_PROCESSES="2",
            VSML_PROCESS_ID=str(i),
        )
        for i in range(2)
    ]
    try:
        es_worker.run(tmp_path / "single.npz", "one")
    finally:
        logs = [_finish(p) for p in multi]
    one = np.load(tmp_path / "single.npz")
    assert "devices 4 processes 2" in logs[0], logs[0]
    two = np.load(tmp_path / "multi0.npz")
    # the population is split over the 4 devices of both processes, a quarter each
    assert int(two["fitness_shard"]) * 4 == int(two["population_size"]) == int(one["fitness_shard"])
    # a population that does not divide over the 4 devices is refused; any divides over 1
    assert bool(two["rejects_nondividing"]) and not bool(one["rejects_nondividing"])
    _assert_same(two, one)


_SHARE_HOST = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from vsml_jax.runtime.devices import population_mesh, replicate
mesh = population_mesh(jax.devices())
x = np.arange(3 * 2**20, dtype=np.uint8).reshape(-1, 3)  # 3 MiB, odd row size
shared, copied = replicate({"x": x}, mesh, readonly=True)["x"], replicate(x, mesh)
ptr = lambda a: {s.data.unsafe_buffer_pointer() for s in a.addressable_shards}
assert len(jax.devices()) == 4 and len(ptr(shared)) == 1 and len(ptr(copied)) == 4
rows = jax.device_put(jnp.arange(8), NamedSharding(mesh, PartitionSpec("pop")))
f = jax.jit(lambda d, i: d[i * 1000].astype(jnp.int32).sum())
want = [int(x[i * 1000].astype(np.int32).sum()) for i in range(8)]
assert np.asarray(jax.vmap(f, (None, 0))(shared, rows)).tolist() == want
np.testing.assert_array_equal(np.asarray(shared), x)
print("ok")
"""


def test_readonly_replicas_share_one_host_buffer():
    """A dataset replicated over 4 CPU devices is one host buffer, not four copies."""
    cmd = ["timeout", "-s", "KILL", "120", sys.executable, "-c", _SHARE_HOST]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(4), capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout + out.stderr


_VECTOR_WIDTH = """
import os, sys
import numpy as np
from vsml_jax.runtime.devices import configure_cpu_devices
configure_cpu_devices(count=1)
print(os.environ.get("XLA_FLAGS", ""))
import jax
from vsml_jax.vsml.cell import CellConfig, init_cell_params, init_cell_state
from vsml_jax.vsml.layers import dense
k = jax.random.split(jax.random.PRNGKey(0), 4)
params = init_cell_params(k[0], CellConfig())
state = init_cell_state(k[1], CellConfig(), (64, 10))
f, e = jax.random.normal(k[2], (64, 8)), jax.random.normal(k[3], (10, 8))
for impl in ("fast", "direct"):
    def ticks(s):
        return jax.lax.fori_loop(0, 20, lambda i, s: dense(params, s, f, e, impl=impl)[0], s)
    out = jax.jit(ticks)(state)
    np.save(f"{sys.argv[1]}-{impl}.npy", np.stack([out.h, out.c]))
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the flag is only set on x86-64")
def test_wide_cpu_vectors_are_set_respect_the_user_and_change_no_bits(tmp_path):
    """``configure_cpu_devices`` asks XLA for 512-bit vectors unless ``XLA_FLAGS`` names a
    width; the layer's ticks are bitwise equal either way."""
    runs = {}
    for name, flags in (("default", ""), ("user", "--xla_cpu_prefer_vector_width=256")):
        cmd = ["timeout", "-s", "KILL", "120", sys.executable, "-c", _VECTOR_WIDTH]
        # the suite's flags only: an in-process run before this test may have set a width
        # in this process's XLA_FLAGS
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"{TEST_XLA_FLAGS} {flags}".strip())
        p = subprocess.run(
            [*cmd, str(tmp_path / name)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert p.returncode == 0, p.stderr
        runs[name] = p.stdout.strip().splitlines()[0]
    assert runs["default"] == f"{TEST_XLA_FLAGS} --xla_cpu_prefer_vector_width=512"
    assert runs["user"] == f"{TEST_XLA_FLAGS} --xla_cpu_prefer_vector_width=256"  # kept
    for impl in ("fast", "direct"):
        wide, narrow = (np.load(tmp_path / f"{n}-{impl}.npy") for n in ("default", "user"))
        assert np.isfinite(wide).all()
        np.testing.assert_array_equal(wide, narrow)


def test_population_error_message_with_fake_mesh():
    class FakeMesh:
        size = 8

    with pytest.raises(ValueError, match="population size 6 does not divide over 8 devices"):
        check_population(6, FakeMesh())
