"""Devices, hosts and the global population mesh.

The ES population axis is sharded over a 1-D :class:`~jax.sharding.Mesh` named
``'pop'`` that spans every device of every process. The same code runs on one
CPU, on 8 GPUs, or on a multi-host TPU pod: only the device count changes.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)

POP = "pop"


class DistributedError(RuntimeError):
    """A jax.distributed run could not connect all of its processes."""


# what the failure line says about where training stands (set by the train loop)
_failure_note: Callable[[], str] = lambda: ""


def set_failure_note(note: Callable[[], str]) -> None:
    """``note()`` is appended to the one line printed when a peer process is lost."""
    global _failure_note
    _failure_note = note


def fail_fast(reason: str, code: int = 3) -> None:
    """Print one line and end this process now, without jax.distributed's shutdown
    barrier (which would wait for the lost peer and then abort with a C++ stack)."""
    result = [""]

    def get_note():
        try:
            result[0] = _failure_note()
        except Exception:  # noqa: BLE001 - never fail while reporting a failure
            pass

    helper = threading.Thread(target=get_note, daemon=True)
    helper.start()
    helper.join(timeout=2)  # never let the report itself hang
    note = result[0]
    print(
        f"error: jax.distributed: {reason}; process {jax.process_index()} exits"
        f"{'; ' + note if note else ''}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(code)


class PeerWatchdog:
    """Each process of a jax.distributed run bumps a counter in the coordination service's
    key-value store every ``timeout / 5`` s and watches the others' counters. A peer whose
    counter stops for ``timeout`` s is dead (or hung): this process prints one line naming
    it and exits (:func:`fail_fast`); so does a process that loses the coordinator
    (process 0). The coordination service's own heartbeat timeout is set longer, so this
    watchdog always speaks first.
    """

    def __init__(self, timeout: float):
        from jax._src import distributed as jax_distributed

        self.client = jax_distributed.global_state.client
        self.timeout, self.me, self.n = timeout, jax.process_index(), jax.process_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vsml-peer-watchdog", daemon=True)
        self.lost: str | None = None

    def start(self) -> PeerWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """This process is done: peers no longer expect its heartbeat."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.client.key_value_set(f"vsml_alive/{self.me}", "done", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordinator may already be gone
            pass

    def _run(self):
        seen = {j: (None, time.monotonic()) for j in range(self.n) if j != self.me}
        beat = 0
        while not self._stop.wait(self.timeout / 5):
            beat += 1
            try:
                self.client.key_value_set(f"vsml_alive/{self.me}", str(beat), allow_overwrite=True)
                values = {j: self._get(j) for j in seen}
            except Exception as e:  # noqa: BLE001 - the service runs in process 0
                if self._stop.is_set():
                    return
                self.lost = "lost the coordinator, process 0"
                fail_fast(f"{self.lost} ({type(e).__name__})")
            now = time.monotonic()
            for j, value in values.items():
                if value == "done":
                    continue
                if value != seen[j][0]:
                    seen[j] = (value, now)
                elif now - seen[j][1] > self.timeout and not self._stop.is_set():
                    state = "never started" if value is None else "stopped responding"
                    self.lost = f"process {j} {state} (no heartbeat for {self.timeout:g} s)"
                    fail_fast(self.lost)

    def _get(self, j: int):
        try:
            return self.client.key_value_try_get(f"vsml_alive/{j}")
        except Exception as e:  # noqa: BLE001 - NOT_FOUND until its first beat
            if "NOT_FOUND" in str(e) or "not found" in str(e).lower():
                return None
            raise


_abort_handler = None  # kept alive: the C function pointer below points into it


def _exit_on_abort() -> None:
    """When the coordination client gives up (it polled an error from the service, e.g.
    because process 0, which hosts it, died), it aborts the process from a C++ thread.
    Catch that SIGABRT in C and end with one line naming the lost process instead of a
    C++ stack, before anything else can hang."""
    global _abort_handler
    import ctypes
    import signal

    def on_abort(signum):
        lost = "the coordinator, process 0" if jax.process_index() else "a peer process"
        fail_fast(f"the coordination service failed: lost contact with {lost}")

    _abort_handler = ctypes.CFUNCTYPE(None, ctypes.c_int)(on_abort)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGABRT, ctypes.cast(_abort_handler, ctypes.c_void_p))


def _on_service_error(*status):
    fail_fast(f"the coordination service reported an error ({' '.join(map(str, status))[:200]})")


def peer_failed(error: Exception, watchdog: PeerWatchdog | None) -> None:
    """A collective failed in a multi-process run (e.g. gloo: connection reset by peer):
    give the watchdog time to name the lost process, then exit in one line."""
    if watchdog is not None:
        deadline = time.monotonic() + watchdog.timeout * 1.5
        while time.monotonic() < deadline:
            time.sleep(0.2)  # the watchdog exits the process when it finds the peer
    first = " ".join(str(error).split())[:200]
    fail_fast(f"a collective failed, a peer process is probably dead ({first})")


def maybe_initialize_distributed(
    enabled: bool = False, heartbeat_timeout_s: int = 20, init_timeout_s: int = 60
) -> bool:
    """Call ``jax.distributed.initialize()`` when asked to (config or ``$VSML_DISTRIBUTED=1``).

    On TPU pods and SLURM clusters JAX detects the coordinator itself. For manual
    launches set ``JAX_COORDINATOR_ADDRESS`` (e.g. ``127.0.0.1:12345``),
    ``VSML_NUM_PROCESSES`` and ``VSML_PROCESS_ID``.

    Every process must join within ``init_timeout_s`` (else :class:`DistributedError`).
    The training loop's :class:`PeerWatchdog` uses ``heartbeat_timeout_s``; the
    coordination service's own heartbeat timeout is set to three times that.
    """
    enabled = enabled or os.environ.get("VSML_DISTRIBUTED", "0") not in ("", "0", "false")
    if not enabled:
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs = {}
    if "VSML_NUM_PROCESSES" in os.environ:
        if "VSML_PROCESS_ID" not in os.environ:
            raise ValueError("VSML_NUM_PROCESSES is set but VSML_PROCESS_ID is not; set both")
        kwargs["num_processes"] = int(os.environ["VSML_NUM_PROCESSES"])
        kwargs["process_id"] = int(os.environ["VSML_PROCESS_ID"])
    from jax._src import distributed as jax_distributed

    runtime = jax_distributed._jax

    def client(*args, **kw):
        # without a callback the client aborts the process (a C++ stack) when it cannot
        # register in time or the service reports an error; with one, a failed connect
        # raises here and a later error calls it
        kw.setdefault("missed_heartbeat_callback", _on_service_error)
        return runtime.get_distributed_runtime_client(*args, **kw)

    class Runtime:  # jaxlib's module, but with that client
        get_distributed_runtime_client = staticmethod(client)

        def __getattr__(self, name):
            return getattr(runtime, name)

    jax_distributed._jax = Runtime()
    try:
        jax.distributed.initialize(
            initialization_timeout=init_timeout_s,
            heartbeat_timeout_seconds=3 * heartbeat_timeout_s,
            **kwargs,
        )
    except (ValueError, TypeError):
        raise
    except Exception as e:  # noqa: BLE001 - XlaRuntimeError and friends
        first = " ".join(str(e).split())[:300]
        coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS", "the coordinator")
        raise DistributedError(
            f"jax.distributed: not every process joined {coordinator} within "
            f"{init_timeout_s} s (distributed_init_timeout_s); start all "
            f"{kwargs.get('num_processes', 'the')} processes"
            + ("" if "bad_cast" in first else f" ({type(e).__name__}: {first})")
        ) from None
    finally:
        jax_distributed._jax = runtime
    if jax.process_count() > 1:
        _exit_on_abort()
    log.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True


def setup_devices(cfg) -> None:
    """The CPU device split and ``jax.distributed`` start-up that a config asks for: a
    RunConfig, or an experiment's config with a ``base`` RunConfig (or only a
    ``cpu_devices``)."""
    b = cfg if hasattr(cfg, "es") else getattr(cfg, "base", None)
    if b is None:
        configure_cpu_devices(getattr(cfg, "cpu_devices", 0))
        return
    per_device = b.es.population_size if b.trainer == "es" else b.grad.batch_size
    configure_cpu_devices(b.cpu_devices, divides=per_device)
    maybe_initialize_distributed(
        b.distributed, b.distributed_heartbeat_timeout_s, b.distributed_init_timeout_s
    )


def configure_cpu_devices(count: int = 0, divides: int | None = None) -> None:
    """Split the host CPU into ``count`` XLA devices, and let XLA's CPU code use 512-bit
    vectors, before JAX starts.

    ``count=0`` picks one device per usable core, reduced to the largest number that
    divides ``divides`` (the population or batch size), so the default works on any
    core count. XLA runs small per-member programs on one core per device, so on a
    CPU-only machine sharding the population over one device per core uses every
    core. Accelerator backends ignore this; an explicit ``XLA_FLAGS`` count wins.

    XLA's CPU compiler prefers 256-bit vectors by default; on a CPU with AVX-512 the
    VSML tick (elementwise LSTM gates over the grid) runs about 1.2x faster with 512
    (:func:`prefer_wide_cpu_vectors`, docs/BENCHMARKS.md). Results are bitwise equal.
    """
    prefer_wide_cpu_vectors()
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    if not count:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        count = max(d for d in range(1, cores + 1) if divides is None or divides % d == 0)
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError as e:  # the backend is already running (e.g. inside tests)
        log.info("cpu_devices left as they are: %s", e)


CPU_VECTOR_FLAG = "--xla_cpu_prefer_vector_width=512"


def prefer_wide_cpu_vectors() -> None:
    """Add :data:`CPU_VECTOR_FLAG` to ``XLA_FLAGS`` on x86-64 unless it names a vector
    width already (that setting wins). XLA reads ``XLA_FLAGS`` when its first backend
    starts, so this only takes effect before then; CPUs without AVX-512 use their widest
    vectors, and accelerator backends ignore the flag."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" in flags or os.uname().machine not in ("x86_64", "AMD64"):
        return
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_VECTOR_FLAG}".strip()


def population_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (global) devices with the population axis ``'pop'``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (POP,), axis_types=(AxisType.Auto,))


def check_population(population_size: int, mesh: Mesh) -> None:
    """The population must split evenly over the mesh's devices."""
    n = mesh.size
    if population_size % n:
        raise ValueError(
            f"population size {population_size} does not divide over {n} devices; "
            f"set es.population_pairs so that 2 * pairs is a multiple of {n}"
        )


def pop_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(POP))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


_ALIGN = 64  # bytes: what XLA's CPU client needs to use a host buffer without copying it


def _aligned_readonly(x: np.ndarray) -> np.ndarray:
    """A private, read-only, 64-byte-aligned copy of ``x``."""
    raw = np.empty(x.nbytes + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    out = raw[start : start + x.nbytes].view(x.dtype).reshape(x.shape)
    out[...] = x
    out.flags.writeable = False
    return out


def replicate(tree, mesh: Mesh, readonly: bool = False):
    """Place host values identically on every device of the mesh (works multi-process).

    ``readonly=True`` is for values no computation will write or donate, such as a
    dataset: on CPU devices all of this process's copies are then one buffer, an
    aligned read-only host copy that every device aliases (``device_put(...,
    may_alias=True)``), so the dataset is stored once per process however many XLA CPU
    devices the process has. Accelerators get one copy each in their own memory."""
    sharding = replicated(mesh)

    def put(x):
        x = np.asarray(x)
        if not readonly:
            return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
        host = _aligned_readonly(x)
        devices = sharding.addressable_devices_indices_map(x.shape)
        shards = [jax.device_put(host, d, may_alias=True) for d in devices]
        return jax.make_array_from_single_device_arrays(x.shape, sharding, shards)

    return jax.tree.map(put, tree)


def to_host(tree):
    """Fetch (replicated or fully addressable) arrays to numpy on this process."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(get, tree)
