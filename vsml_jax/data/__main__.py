"""Command line: ``python -m vsml_jax.data {list,prepare} ...``.

* ``list [--data-dir DIR]``: each dataset, which source is present and where, or missing.
* ``prepare NAME [--data-dir DIR] [--manual-dir DIR]``: build NAME with TFDS (needs
  TensorFlow); writes to DIR, else ``$VSML_DATA_DIR``, else TFDS's default data dir.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vsml_jax.data import prepare as prepare_lib
from vsml_jax.data import registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vsml_jax.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("list", help="show which datasets are present")
    show.add_argument("--data-dir", help="searched before the default dirs")
    build = commands.add_parser("prepare", help="build a dataset with TFDS (needs TensorFlow)")
    build.add_argument(
        "name", choices=[n for n in registry.LOGICAL_NAMES if n not in registry.SYNTHETIC_NAMES]
    )
    build.add_argument("--data-dir", help="where to write (default: $VSML_DATA_DIR or TFDS's)")
    build.add_argument("--manual-dir", help="folder holding the raw files (offline builds)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "list":
            rows = prepare_lib.status(args.data_dir)
            width = max(len(name) for name, _ in rows)
            for name, where in rows:
                print(f"{name:<{width}}  {where}")
        else:
            out = prepare_lib.prepare(args.name, args.data_dir, args.manual_dir)
            print(f"Prepared {args.name} in {out}")
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
