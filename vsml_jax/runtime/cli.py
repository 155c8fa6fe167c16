"""The one entry shape of every command: ``python -m experiments.<name> [--config PRESET]
[--set key=value ...] [--resume [RUN_DIR]] [--data-dir DIR]`` (and ``python -m
vsml_jax.evaluate``).

An experiment describes itself as a :class:`Command` (its preset, config class and the
function that does the work in a run directory); :func:`run_command` does the rest, the
same way for all of them:

* parse the shared flags (and the command's own), set up logging;
* load the config, checking names (``--set`` overrides on top of the preset, or of the
  run's own saved config with ``--resume``), and refuse on ``--resume`` a change to a key
  outside :attr:`Command.resume_safe` before anything is written;
* set up the devices (the CPU device split, ``jax.distributed``);
* create the run dir exclusively (or reopen the resumed one) and lock it for the whole
  run (:func:`vsml_jax.runtime.rundir.open_run`: a start that fails leaves no run dir);
* write ``config.yaml`` atomically and ``provenance.json``;
* turn bad input into one line (exit 2) and Ctrl-C into one line (exit 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vsml_jax.config import ConfigError, RunConfig
from vsml_jax.runtime import interrupts


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input (config, data, checkpoint, devices): one line, exit 2."""
    from vsml_jax.runtime.checkpoint import CheckpointError
    from vsml_jax.runtime.devices import DistributedError
    from vsml_jax.runtime.rundir import RunDirError
    from vsml_jax.vsml.kernel import KernelUnavailable

    return (
        ConfigError,
        OSError,  # FileNotFoundError, FileExistsError, PermissionError, ...
        ValueError,
        FloatingPointError,
        CheckpointError,
        RunDirError,
        DistributedError,
        KernelUnavailable,
    )


def report(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


@dataclasses.dataclass(frozen=True)
class Command:
    """What one command runs; :func:`run_command` handles everything around it.

    ``run(cfg, run_dir, resumed)`` does the work in the (locked) run dir and returns a
    line for the end (or None). ``config_cls`` is :class:`RunConfig` or a command's own
    config class with ``name``, ``out_dir`` and a ``base`` RunConfig (its seed is
    ``seed``, else ``base.seed``), or without a ``base`` its own ``seed``, ``data_dir`` and
    ``cpu_devices`` (``EvaluateConfig``). ``resume_safe`` are the keys ``--resume`` may
    change. ``add_args(parser)`` adds the command's own flags and ``overrides(args)`` turns them
    into ``key=value`` overrides (applied after ``--set``). ``defaults`` are ``key=value``
    overrides of the preset that a fresh start applies before ``--set`` (a resume starts
    from the run's saved config instead). With ``resume_needs_checkpoint``, a bare
    ``--resume`` picks the newest run that wrote a checkpoint (else: one that has a
    config.yaml). ``resume_help`` says what ``--resume`` does, where it is not continuing
    finished work.
    """

    description: str
    preset: str | Path | None
    run: Callable[[Any, Path, bool], str | None]
    config_cls: type = RunConfig
    set_example: str = "es.population_pairs=128"
    resume_safe: tuple[str, ...] = ()
    add_args: Callable[[argparse.ArgumentParser], None] | None = None
    overrides: Callable[[argparse.Namespace], list[str]] | None = None
    resume_needs_checkpoint: bool = False
    defaults: tuple[str, ...] = ()
    resume_help: str = "continue the latest run of this config (or RUN_DIR); finished work is kept"
    print_config: bool = False
    prog: str | None = None  # the command as usage shows it, e.g. python -m experiments.x


def _seed(cfg) -> int:
    return cfg.seed if hasattr(cfg, "seed") else cfg.base.seed


def add_config_args(p: argparse.ArgumentParser, preset, set_help: str) -> None:
    """``--config PRESET`` and repeatable ``--set KEY=VALUE`` (into ``args.overrides``)."""
    p.add_argument("--config", default=preset, help="YAML preset (default: %(default)s)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help
    )


def parser(command: Command) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command.prog,
        description=command.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_args(
        p, command.preset, f"override a config value, e.g. --set {command.set_example} (repeatable)"
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help=command.resume_help,
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data dir, the only one searched (else $VSML_DATA_DIR, "
        "../shared/datasets/tfds, TFDS default)",
    )
    if command.print_config:
        p.add_argument("--print-config", action="store_true", help="print the config and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks instead of one line")
    if command.add_args is not None:
        command.add_args(p)
    return p


def resolve(command: Command, args) -> tuple[Any, Path | None]:
    """``(cfg, run_dir)``: the config (names checked), and with ``--resume`` the run dir,
    whose saved config the new one may differ from only in ``command.resume_safe``."""
    from vsml_jax.build import load_run_config
    from vsml_jax.runtime import rundir

    cls, preset = command.config_cls, command.preset
    overrides = list(args.overrides)
    if command.overrides is not None:
        overrides += command.overrides(args)
    if args.data_dir:
        fields = {f.name for f in dataclasses.fields(cls)}
        key = "base.data.data_dir" if "base" in fields else "data_dir"
        overrides.append(f"{'data.data_dir' if cls is RunConfig else key}={args.data_dir}")
    if not args.resume or args.resume is True:
        fresh = [*command.defaults, *overrides]
        cfg = load_run_config(args.config, fresh, cls=cls, defaults=preset)
    if not args.resume:
        return cfg, None
    if args.resume is True:
        run_dir = rundir.latest_run_dir(
            Path(cfg.out_dir) / cfg.name, with_checkpoint=command.resume_needs_checkpoint
        )
    else:
        run_dir = Path(args.resume)
    # the saved config is complete: the preset must not merge into it (a dict such as
    # la_overrides would get the preset's entries back)
    saved = rundir.saved_config(run_dir, cls)
    cfg = load_run_config(run_dir / "config.yaml", overrides, cls=cls)
    rundir.check_resume_config(saved, cfg, run_dir, command.resume_safe)
    return cfg, run_dir


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("vsml_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)


def guarded(work: Callable[[], Any], verbose: bool = False, interrupted=lambda: "") -> int:
    """Run ``work()``: bad input becomes one line and exit 2, Ctrl-C one line (the
    interrupt's own message, else ``interrupted()``) and exit 130; with ``verbose`` both
    raise as they are. Ctrl-C raises ``KeyboardInterrupt`` from here on, so that a run can
    name its last checkpoint (before, :func:`interrupts.install` ends the process)."""
    interrupts.raise_from_now_on()
    try:
        work()
    except user_errors() as e:
        if verbose:
            raise
        rc = report(e)
        from vsml_jax.runtime.devices import DistributedError

        if isinstance(e, DistributedError):  # skip the coordination service's C++ teardown
            sys.stderr.flush()
            os._exit(rc)
        return rc
    except KeyboardInterrupt as e:
        if verbose:
            raise
        print(str(e) or interrupted() or "interrupted", file=sys.stderr)
        return interrupts.leave(130)  # skips a teardown that can crash mid-compile
    return 0


def run_command(command: Command, argv=None) -> int:
    """Run ``command`` with the command line ``argv``; returns the exit status."""
    args = parser(command).parse_args(argv)
    setup_logging(args.verbose)
    try:
        cfg, run_dir = resolve(command, args)
    except (ConfigError, OSError) as e:
        if args.verbose:
            raise
        return report(e)
    if getattr(args, "print_config", False):
        import yaml

        from vsml_jax.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    opened: list[Path] = [run_dir] if run_dir else []

    def work():
        import jax

        from vsml_jax.runtime import rundir
        from vsml_jax.runtime.devices import setup_devices

        setup_devices(cfg)
        is_main = jax.process_index() == 0
        root = Path(cfg.out_dir) / cfg.name
        with rundir.open_run(root, _seed(cfg), run_dir, resume=run_dir is not None) as where:
            opened[:] = [where]
            if is_main:
                rundir.write_config(where, cfg)
                rundir.write_provenance(where)
                print(f"run dir: {where}", flush=True)
            done = command.run(cfg, where, run_dir is not None)
        if done and is_main:
            print(done, flush=True)

    def kept() -> str:  # a start interrupted before any work leaves no run dir
        if opened and opened[0].is_dir():
            return f"interrupted; finished work is kept: --resume {opened[0]}"
        return ""

    return guarded(work, args.verbose, kept)


# --------------------------------------------------------------------------- meta-training


def train_command(preset, description: str, prog: str | None = None) -> Command:
    """The command of a plain meta-training run (:func:`vsml_jax.train.train_in`)."""
    from vsml_jax.runtime.rundir import RESUME_SAFE

    def run(cfg, run_dir, resumed):
        from vsml_jax.train import train_in

        train_in(cfg, run_dir, resumed)

    return Command(
        description=description,
        preset=preset,
        run=run,
        resume_safe=RESUME_SAFE,
        resume_needs_checkpoint=True,
        print_config=True,
        prog=prog,
    )


def main(argv=None, default_preset: str | None = None, description: str = "") -> int:
    """A meta-training run of the preset (``python -m experiments.es_mnist``)."""
    command = train_command(
        default_preset, description or __doc__, "python -m experiments.es_mnist"
    )
    return run_command(command, argv)


def staged_results(run_dir: Path, outputs: str) -> str:
    """The end of an experiment that writes ``results.md``: the table, and where it is."""
    return f"{(Path(run_dir) / 'results.md').read_text()}\ndone: {run_dir} ({outputs})"


# the keys an experiment's --resume may change: where it runs and writes, not what
STAGED_RESUME_SAFE = (
    "name",
    "out_dir",
    "data_dir",
    "cpu_devices",
    "base.data.data_dir",
    "base.cpu_devices",
    "base.distributed",
    "base.distributed_heartbeat_timeout_s",
    "base.distributed_init_timeout_s",
    "base.tensorboard",
    "base.checkpoint_every",
    "base.keep_checkpoints",
)


def experiment_command(
    description: str,
    preset,
    config_cls: type,
    run: Callable[[Any, Path], Any],
    set_example: str,
    outputs: str,
    **kw,
) -> Command:
    """The command of an experiment whose stages all write under one run dir and skip
    what is finished (so ``--resume`` continues a killed run): ``run(cfg, run_dir)``
    writes ``results.md`` there, which is printed at the end."""

    def run_stages(cfg, run_dir, resumed):
        import jax

        run(cfg, run_dir)
        return staged_results(run_dir, outputs) if jax.process_index() == 0 else None

    return Command(
        description=description,
        preset=preset,
        run=run_stages,
        config_cls=config_cls,
        set_example=set_example,
        resume_safe=STAGED_RESUME_SAFE,
        **kw,
    )


def experiment_main(protocol: str, config_cls: str, description: str, preset, *args, **kw):
    """``main(argv=None) -> int`` of an experiment: :func:`run_command` of
    :func:`experiment_command` over ``<protocol>.run`` and ``<protocol>.<config_cls>``
    (``protocol`` a module name, imported only once the command runs)."""

    def main(argv=None) -> int:
        import importlib

        module = importlib.import_module(protocol)
        cls = getattr(module, config_cls)
        prog = "python -m " + protocol.rsplit(".", 1)[0]
        command = experiment_command(description, preset, cls, module.run, *args, prog=prog, **kw)
        return run_command(command, argv)

    return main
