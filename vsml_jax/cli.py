"""Command line: ``python -m vsml_jax.cli --config PRESET [--set key=value ...] [--resume]``.

Experiments in ``experiments/`` call :func:`main` with their default preset.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vsml_jax import interrupts

if __name__ == "__main__":  # Ctrl-C during the imports below: one line, exit 130
    interrupts.install()

from vsml_jax.config import ConfigError, RunConfig, load_config  # noqa: E402


def user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input (config, data, checkpoint, devices): one line, exit 2."""
    from vsml_jax.checkpoint import CheckpointError
    from vsml_jax.meta.sharding import DistributedError
    from vsml_jax.rundir import RunDirError
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


def report_interrupt(error: KeyboardInterrupt) -> int:
    """Ctrl-C: one line (where the last checkpoint is, when training had started)."""
    print(str(error) or "interrupted", file=sys.stderr)
    return 130


def report(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 2


def add_run_args(p: argparse.ArgumentParser, default_preset, set_example: str) -> None:
    """The flags every experiment shares: --config, --set, --resume, --data-dir."""
    p.add_argument("--config", default=default_preset, help="YAML preset (default: %(default)s)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {set_example} (repeatable)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue the latest run of this config (or RUN_DIR); finished work is kept",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data dir, the only one searched (else $VSML_DATA_DIR, "
        "../shared/datasets/tfds, TFDS default)",
    )


def parse_args(argv=None, default_preset: str | None = None, description: str = ""):
    p = argparse.ArgumentParser(description=description or __doc__)
    add_run_args(p, default_preset, "es.population_pairs=128")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def resolve_config(args) -> RunConfig:
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    preset = args.config
    if args.resume and args.resume is not True:
        preset = Path(args.resume) / "config.yaml"
        if not preset.is_file():
            raise FileNotFoundError(
                f"--resume {args.resume}: no config.yaml there, so it is not a run dir (or "
                "its first start failed); start without --resume"
            )
    elif args.resume:
        from vsml_jax.rundir import latest_run_dir

        run = latest_run_dir(load_config(preset, overrides))
        args.resume, preset = run, run / "config.yaml"
    return load_config(preset, overrides)


def main(argv=None, default_preset: str | None = None, description: str = "") -> int:
    args = parse_args(argv, default_preset, description)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("vsml_jax").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        cfg = resolve_config(args)
    except (ConfigError, OSError) as e:
        return report(e)
    if args.print_config:
        import yaml

        from vsml_jax.config import to_dict

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from vsml_jax.train import train

    try:
        interrupts.raise_from_now_on()  # training names its last checkpoint on Ctrl-C
        train(cfg, resume=args.resume)
    except user_errors() as e:
        if args.verbose:
            raise
        rc = report(e)
        from vsml_jax.meta.sharding import DistributedError

        if isinstance(e, DistributedError):  # skip the coordination service's C++ teardown
            sys.stderr.flush()
            os._exit(rc)
        return rc
    except KeyboardInterrupt as e:
        if args.verbose:
            raise
        return interrupts.leave(report_interrupt(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def staged_main(
    argv,
    description: str,
    preset,
    load,
    set_example: str,
    outputs: str,
) -> int:
    """``main`` of an experiment whose stages all write under one run folder
    (``runs/<name>/<stamp>-seed<seed>``) and skip what is already there, so
    ``--resume [RUN_DIR]`` continues a killed run. ``load()`` returns ``(config class,
    run(cfg, run_dir))``; the config class has ``name``, ``out_dir``, ``seed`` and a
    ``base`` RunConfig (``--data-dir`` sets ``base.data.data_dir``)."""
    import yaml

    from vsml_jax.config import to_dict

    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_args(p, str(preset), set_example)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("vsml_jax").setLevel(logging.INFO)
    cls, run = load()
    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"base.data.data_dir={args.data_dir}")
    try:
        cfg, run_dir = run_config(
            args.resume, args.config, overrides, cls, preset, "a run folder of this experiment"
        )
    except (ConfigError, FileNotFoundError) as e:
        return report(e)
    from vsml_jax.rundir import new_run_dir

    if run_dir is None:  # exclusive, and the same dir for every process
        run_dir = new_run_dir(Path(cfg.out_dir) / cfg.name, cfg.seed)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"run dir: {run_dir}", flush=True)
    try:
        run(cfg, run_dir)
    except user_errors() as e:
        return report(e)
    print((run_dir / "results.md").read_text())
    print(f"done: {run_dir} ({outputs})")
    return 0


def run_config(resume, config, overrides, cls, preset, what: str):
    """``(cfg, run_dir)``: with ``--resume``, the run folder :func:`resume_dir` names and
    its own saved config with ``overrides`` on top; else ``config`` (``run_dir`` None)."""
    run_dir = resume_dir(resume, config, overrides, cls, preset, what) if resume else None
    config = run_dir / "config.yaml" if run_dir else config
    return load_config(config, overrides, cls=cls, defaults=preset), run_dir


def resume_dir(resume, config, overrides, cls, preset, what: str) -> Path:
    """The run folder ``--resume [RUN_DIR]`` names: ``RUN_DIR`` (it must hold a
    ``config.yaml``), or else the newest run of the config's ``name`` under ``out_dir``.
    ``what`` names the folder in the error (e.g. ``'a cross-dataset run folder'``)."""
    from vsml_jax.rundir import sorted_runs

    if resume is not True:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"--resume {run_dir}: not {what}")
        return run_dir
    cfg = load_config(config, overrides, cls=cls, defaults=preset)
    root = Path(cfg.out_dir) / cfg.name
    runs = sorted_runs(p for p in root.glob("*") if (p / "config.yaml").is_file())
    if not runs:
        raise FileNotFoundError(f"--resume: no run under {root}; start without --resume")
    return runs[-1]
