"""What the entry points outside Hydra (predict, evaluate, export) share: their MLflow store and model arguments,
bad input as one line and exit code 2, and the console of a run (sentlab's lines on stderr, dependency noise
off), so that standard output carries only their results."""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from sentlab.errors import ConfigError

STORE = "sqlite:///runs/mlflow.db"  # the project's store, as `python -m sentlab.train` writes it by default
MODEL_HELP = "a run id, runs:/RUN_ID/model or models:/NAME@ALIAS"


def parser(prog: str, doc: str, model: bool = True) -> argparse.ArgumentParser:
    """An argument parser with --tracking-uri and, unless model=False, the MODEL argument first."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.strip().split("\n")[0])
    if model:
        p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--tracking-uri", default=STORE, help="the MLflow store (default: %(default)s)")
    return p


def entry_point(prog: str):
    """Decorate `main(argv) -> exit code` so that a ConfigError is one line on stderr (`prog: error: ...`) and
    exit code 2."""

    def decorate(main):
        @functools.wraps(main)
        def run(argv=None) -> int:
            try:
                return main(argv)
            except ConfigError as err:
                print(f"{prog}: error: {err}", file=sys.stderr)
                return 2

        return run

    return decorate


def run(main) -> None:
    """Run an entry point from the command line with a run's console, and exit with main()'s code."""
    from sentlab import console

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(console.ConsoleFilter())
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    console.quiet_dependencies()
    sys.exit(main())
