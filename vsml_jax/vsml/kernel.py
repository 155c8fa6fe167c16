"""The fused CPU kernel of the dense layer's LSTM tick (``network.impl: fused``, opt-in).

:func:`lstm_update_grid_fused` computes :func:`~vsml_jax.vsml.cell.lstm_update_grid`
(the fast path's tick: recurrent matmul, gates, state update) as one XLA FFI custom
call, ``lstm_grid.cc``, that keeps each 16-cell block's gates in registers instead of
passing ``[4H, B * A]`` arrays through memory (1.5-1.8x faster per tick than XLA's on an
AVX-512 core, ``benchmarks/fused_tick.py``; docs/BENCHMARKS.md). Its gates are exp-based
(within 3e-7 of float64 in ``h``, where XLA's tanh is within 5e-7); the fast path is its
reference in the tests. It is not the default: those small differences send an ES run
down another trajectory than XLA's, and the project's documented figures were made, and
reproduce to the last digit, on XLA's path.

The kernel is compiled on first use with the system's C++ compiler (``$CXX``, default
``g++``; ``-O3 -march=native``) against the FFI headers of the installed jaxlib, and
cached in ``$VSML_KERNEL_CACHE`` (default ``~/.cache/vsml_jax``) under a name that
hashes the source, the flags, the compiler, jax's version and the CPU; the library is
written to a temporary file and renamed, so concurrent processes never load half a file,
and then its SHA-256 is written beside it (``<name>.so.sha256``). A cached library is
loaded only if it matches that stamp (a truncated file would crash the process with a
bus error when loaded) and exports the kernel's symbol; otherwise it is rebuilt, and
where that fails too, one line says why.
It needs a CPU with AVX-512 (elsewhere XLA's fast path is faster), hidden size 16 and
float32 matmuls. The choice is made by ``lax.platform_dependent``, for the platform the
program is lowered for: lowered for an accelerator (or compiled for a TPU topology on a
CPU host, ``benchmarks/plan.py``) ``impl: fused`` runs the fast path, and nothing is
built; only a CPU lowering builds the kernel and raises, in one line, why it cannot run.
A differentiated tick runs the fast path instead (``custom_vjp``: reverse mode only);
the ES and meta-test evaluations are not differentiated.

The kernel stays an optional module of the package, not an extra built at install time:
it is one source file compiled lazily on first use for the machine that runs it
(``-march=native``, its cache keyed by the CPU), so an install-time build would bake in
the build host's CPU and make every install need a compiler, for an opt-in path.
Importing it (or collecting the tests) compiles nothing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from vsml_jax.vsml.cell import CellParams, CellState, lstm_update_grid

SOURCE = Path(__file__).with_name("lstm_grid.cc")
TARGET = "vsml_lstm_grid"
SYMBOL = "VsmlLstmGrid"  # the handler lstm_grid.cc exports
HIDDEN = 16  # the kernel's hidden size (the paper's)
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=gnu++17", "-shared", "-fPIC", "-w")


class KernelUnavailable(RuntimeError):
    """The fused kernel cannot be built or loaded here."""


def cache_dir() -> Path:
    if os.environ.get("VSML_KERNEL_CACHE"):
        return Path(os.environ["VSML_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vsml_jax"


NO_AVX512 = (
    "network.impl 'fused' needs a CPU with AVX-512 F and DQ (its kernel is slower than XLA's code "
    "without it): use network.impl 'fast'"
)


def _has_avx512() -> bool:
    try:
        flags = [x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags")]
    except OSError:  # not Linux: no AVX-512 we can see
        return False
    return bool(flags) and {"avx512f", "avx512dq"} <= set(flags[0].split())


def _cpu_identity() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({x for x in lines if x.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def build(out: Path, flags: tuple[str, ...] = FLAGS, cxx: str | None = None) -> Path:
    """Compile ``lstm_grid.cc`` with ``flags`` into the shared library ``out`` (atomically:
    a temporary file in the same folder, then renamed)."""
    cxx = cxx or os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise KernelUnavailable(
            f"network.impl 'fused' needs a C++ compiler to build its CPU kernel, and {cxx!r} "
            "is not on PATH: install g++ (or set CXX), or use network.impl 'fast'"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(fd)
    cmd = [cxx, *flags, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KernelUnavailable(
                f"building the fused VSML kernel failed ({' '.join(cmd)}): {last}; "
                "use network.impl 'fast'"
            )
        os.replace(tmp, out)
        stamp = _stamp(out)  # written after the library: a stamp vouches for a whole file
        tmp_stamp = stamp.with_name(stamp.name + ".tmp")
        tmp_stamp.write_text(_sha256(out) + "\n")
        os.replace(tmp_stamp, stamp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified(path: Path) -> bool:
    """Whether ``path`` is a whole library this cache built, with the kernel's symbol:
    its SHA-256 matches the stamp written after it (never dlopen a truncated file: it
    bus-errors) and its dynamic string table names the symbol (checked before loading,
    because a process cannot load a rebuilt file under a path it has loaded before)."""
    try:
        data = path.read_bytes()
        stamp = _stamp(path).read_text().strip()
    except OSError:
        return False
    return stamp == hashlib.sha256(data).hexdigest() and SYMBOL.encode() + b"\0" in data


def cached_library(flags: tuple[str, ...] = FLAGS) -> Path:
    """The kernel built with ``flags`` for this machine: from the cache if it is verified
    (see :func:`verified`), else built into it."""
    cxx = os.environ.get("CXX", "g++")
    version = ""
    if shutil.which(cxx):
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = "\0".join([SOURCE.read_text(), *flags, cxx, version, jax.__version__, _cpu_identity()])
    path = cache_dir() / f"lstm_grid-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if verified(path):
        return path
    build(path, flags, cxx)
    if not verified(path):
        raise KernelUnavailable(
            f"the fused kernel built in {path} does not export {SYMBOL} ({SOURCE} and the "
            "compiler disagree); use network.impl 'fast'"
        )
    return path


def open_library(flags: tuple[str, ...] = FLAGS):
    """The cached kernel library (see :func:`cached_library`), loaded, its symbol checked;
    raises KernelUnavailable in one line where it cannot be loaded (and drops its stamp,
    so that the next process rebuilds it)."""
    path = cached_library(flags)
    try:
        lib = ctypes.CDLL(str(path))
        lib[SYMBOL]  # noqa: B018 - raises AttributeError if it is not exported
    except (OSError, AttributeError) as e:
        _stamp(path).unlink(missing_ok=True)
        raise KernelUnavailable(
            f"the fused kernel built in {path} cannot be loaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}); the next run rebuilds it; use network.impl "
            "'fast' meanwhile"
        ) from None
    return lib


@functools.cache
def _load() -> str:
    """Build (or find) the kernel and register it with XLA; ``''`` or why it failed."""
    if not _has_avx512():
        return NO_AVX512
    try:
        lib = open_library()
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib[SYMBOL]), platform="cpu")
    except KernelUnavailable as e:
        return str(e)
    except OSError as e:  # e.g. a read-only cache folder
        return (
            f"the fused kernel could not be built or loaded in {cache_dir()} ({e}): set "
            "VSML_KERNEL_CACHE to a writable folder, or use network.impl 'fast'"
        )
    return ""


def available() -> bool:
    """Whether the kernel is built (or can be) and registered, for CPU computations."""
    return not _load()


def lstm_update_grid_fused(
    params: CellParams, state: CellState, rows: jax.Array, cols: jax.Array
) -> CellState:
    """:func:`~vsml_jax.vsml.cell.lstm_update_grid` with the gate input
    ``rows[:, None, :] + cols[:, :, None]`` (``rows`` ``[4H, A]``, ``cols`` ``[4H, B]``),
    on the fused kernel where the computation is lowered for CPU (XLA's fast path
    elsewhere: ``lax.platform_dependent`` traces both and lowers only the platform's)."""
    return jax.lax.platform_dependent(params, state, rows, cols, cpu=_fused, default=_reference)


def _check(hidden: int) -> None:
    """Raise, in one line, why the kernel cannot run a tick of hidden size ``hidden``
    here; else build (or find) it and register it with XLA. Called when a CPU program is
    lowered, so that a program lowered for another platform builds nothing."""
    if hidden != HIDDEN:
        raise ValueError(f"network.impl 'fused' needs cell.hidden {HIDDEN}, got {hidden}")
    why = _load()
    if why:
        raise KernelUnavailable(why)


# the identity on one of the kernel's operands, whose lowering runs _check: it ties the
# kernel's build and its errors to the CPU lowering (the custom call's operand depends on
# it, so it is lowered first and never dropped as dead code)
_ready_p = Primitive("vsml_fused_kernel_ready")
_ready_p.def_abstract_eval(lambda x, *, hidden: x)
_ready_p.def_impl(lambda x, *, hidden: _check(hidden) or x)
mlir.register_lowering(_ready_p, lambda ctx, x, *, hidden: _check(hidden) or [x])
batching.primitive_batchers[_ready_p] = lambda xs, dims, *, hidden: (
    _ready_p.bind(*xs, hidden=hidden),
    dims[0],
)


def _reference(params, state, rows, cols):
    return lstm_update_grid(params, state, rows[:, None, :] + cols[:, :, None])


@jax.custom_vjp
def _fused(params: CellParams, state: CellState, rows, cols) -> CellState:
    f32 = [jnp.asarray(x, jnp.float32) for x in (params.w_h.T, state.h, state.c, rows, cols)]
    out = jax.ShapeDtypeStruct(state.h.shape, jnp.float32)
    b = _ready_p.bind(jnp.asarray(params.b, jnp.float32), hidden=state.h.shape[0])
    h, c = jax.ffi.ffi_call(
        TARGET,
        (out, out),
        vmap_method="sequential",
        input_output_aliases={1: 0, 2: 1},  # h and c are updated in place
    )(*f32, b)
    return CellState(h=h, c=c)


def _fused_fwd(params, state, rows, cols):
    # differentiated, the tick runs XLA's fast path: its backward pass needs that
    # forward's residuals anyway, so the kernel would only add work
    return jax.vjp(_reference, params, state, rows, cols)


def _fused_bwd(vjp, g):
    return vjp(g)


_fused.defvjp(_fused_fwd, _fused_bwd)
