"""Two jax.distributed processes on 127.0.0.1: one is killed, the survivor exits in one
line naming it and the last checkpoint; then a 2-process --resume finishes the run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import xla_flags
from tests.tiny import PRESET, TINY_SUM

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *TINY_SUM,
    "distributed=true",
    "distributed_heartbeat_timeout_s=5",
    "distributed_init_timeout_s=60",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(port, i, *args):
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=1"),
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        VSML_NUM_PROCESSES="2",
        VSML_PROCESS_ID=str(i),
    )
    cmd = ["timeout", "-s", "KILL", "300", sys.executable, "-m", "experiments.es_mnist"]
    cmd += ["--config", str(PRESET), *(x for o in TINY for x in ("--set", o)), *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()  # timeout(1) then kills its child with SIGKILL
            p.wait()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_killed_process_makes_the_survivor_exit_in_one_line_then_resume(tmp_path):
    port = _port()
    procs = [
        # a peer silent for 5 s is dead (the default 20 s would only make the test wait)
        _launch(
            port,
            i,
            "--set",
            f"out_dir={tmp_path}",
            "--set",
            "es.generations=100000",
            "--set",
            "distributed_heartbeat_timeout_s=5",
        )
        for i in range(2)
    ]
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(tmp_path.glob("quickstart/*/checkpoints/5")):
            assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
            time.sleep(0.1)
        run = next(tmp_path.glob("quickstart/*"))
        child = subprocess.run(["pgrep", "-P", str(procs[1].pid)], capture_output=True, text=True)
        os.kill(int(child.stdout.split()[0]), signal.SIGKILL)
        t0 = time.time()
        try:
            _, err = procs[0].communicate(timeout=120)
        except subprocess.TimeoutExpired:
            _kill_all(procs)
            raise AssertionError(procs[0].communicate()[1][-3000:]) from None
        assert time.time() - t0 < 60
        assert procs[0].returncode == 3, err[-3000:]
        assert "Traceback" not in err and "Check failure stack trace" not in err
        lines = [x[x.index("error:") :] for x in err.splitlines() if "error:" in x]
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith("error: jax.distributed: process 1 stopped responding")
        assert f"the last checkpoint is {run}/checkpoints/" in lines[0]
        assert f"--resume {run}" in lines[0]
    finally:
        _kill_all(procs)

    port = _port()
    procs = [_launch(port, i, "--resume", str(run), "--set", "es.generations=30") for i in range(2)]
    try:
        outs = [p.communicate(timeout=280) for p in procs]
    finally:
        _kill_all(procs)
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:]
    assert "resumed from generation" in outs[0][0] and f"done: {run}" in outs[0][0]
    assert (run / "checkpoints" / "30").is_dir()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_peer_that_never_starts_is_one_line_error(tmp_path):
    p = _launch(_port(), 0, "--set", f"out_dir={tmp_path}", "--set", "distributed_init_timeout_s=3")
    try:
        _, err = p.communicate(timeout=120)
    finally:
        _kill_all([p])
    assert p.returncode == 2, err[-3000:]
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[-1].startswith("error: jax.distributed: not every process joined 127.0.0.1:")
    assert "within 3 s" in lines[-1] and "Check failure" not in err
    assert not list(tmp_path.glob("quickstart/*"))
