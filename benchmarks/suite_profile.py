"""Where the test suite's CPU goes: a pytest plugin.

    VSML_LIBTPU_DIR=.venv/libtpu .venv/bin/python -m pytest -q -n auto --dist worksteal \\
        -p benchmarks.suite_profile
    .venv/bin/python -m benchmarks.suite_profile

Each process (the xdist workers, or the one pytest process) appends to
``$SUITE_PROFILE_DIR/<pid>.jsonl`` (default ``.cache/suite_profile``), per test: its CPU
seconds (``getrusage`` of the process and of its waited-for children, so subprocess tests
count), its wall seconds, and XLA's backend compiles it triggered in-process (count and
CPU seconds, by wrapping ``jax._src.compiler.backend_compile_and_load``). Run as a module,
it prints the totals and the heaviest tests of the last profile. CPU, not wall time, is
what the suite's two workers share on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pytest

OUT = Path(os.environ.get("SUITE_PROFILE_DIR", ".cache/suite_profile"))
_compiles: list[float] = []


def _cpu() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def pytest_configure(config):
    from jax._src import compiler

    compile_and_load = compiler.backend_compile_and_load

    def timed(*args, **kwargs):
        t0 = time.process_time()
        try:
            return compile_and_load(*args, **kwargs)
        finally:
            _compiles.append(time.process_time() - t0)

    compiler.backend_compile_and_load = timed  # its callers look it up in the module
    if not hasattr(config, "workerinput"):  # the controller, or pytest without xdist
        OUT.mkdir(parents=True, exist_ok=True)
        for old in OUT.glob("*.jsonl"):
            old.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    (own0, kids0), wall0, n0 = _cpu(), time.time(), len(_compiles)
    yield
    (own1, kids1), wall1 = _cpu(), time.time()
    row = {
        "test": item.nodeid,
        "cpu": own1 - own0,
        "children_cpu": kids1 - kids0,
        "wall": wall1 - wall0,
        "compiles": len(_compiles) - n0,
        "compile_cpu": sum(_compiles[n0:]),
    }
    with open(OUT / f"{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def main() -> int:
    rows = [json.loads(line) for f in sorted(OUT.glob("*.jsonl")) for line in open(f)]
    if not rows:
        print(f"error: no profile in {OUT}; run pytest with -p benchmarks.suite_profile first")
        return 2
    total = lambda r: r["cpu"] + r["children_cpu"]  # noqa: E731
    cpu = sum(map(total, rows))
    print(
        f"{len(rows)} tests: {cpu:.0f} s of CPU ({sum(r['children_cpu'] for r in rows):.0f} s "
        f"in subprocesses), {sum(r['compiles'] for r in rows)} in-process XLA compiles taking "
        f"{sum(r['compile_cpu'] for r in rows):.0f} s of it"
    )
    for label, lo, hi in (
        ("10 s or more", 10, float("inf")),
        ("3-10 s", 3, 10),
        ("under 3 s", 0, 3),
    ):
        group = [r for r in rows if lo <= total(r) < hi]
        print(f"tests of {label} of CPU: {len(group)}, {sum(map(total, group)):.0f} s together")
    print("heaviest (CPU s, of it compiles s, test):")
    for r in sorted(rows, key=total, reverse=True)[:25]:
        print(f"{total(r):7.1f} {r['compile_cpu']:6.1f}  {r['test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
