"""The ``streamlet`` command.

``streamlet run module:attribute`` imports a module (or a ``path/to/file.py``)
and runs the ``Pipeline`` named by the attribute (or returned by it, when it
is a function). Ctrl-C cancels the job cleanly: every task is cancelled and
every source and sink closed before the command exits with status 130.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._pipeline import Pipeline
from .errors import StreamletError


class CliError(StreamletError):
    """A command line that cannot be carried out."""


def load_pipeline(target: str) -> Pipeline:
    """Resolve ``module:attribute`` or ``file.py:attribute`` to a Pipeline."""
    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"expected module:attribute (e.g. myapp.jobs:pipeline), got {target!r}")
    module: Any
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise CliError(f"no such file: {module_name}")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise CliError(f"cannot import {module_name!r}: {exc}") from exc
    obj = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, Pipeline) and callable(obj):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise CliError(f"{target} is a {type(obj).__name__}, not a streamlet Pipeline")
    return obj


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline until its inputs end or Ctrl-C")
    run.add_argument("target", help="module:attribute or path/to/file.py:attribute")
    plan = commands.add_parser("plan", help="print the tasks and channels a pipeline runs as")
    plan.add_argument("target", help="module:attribute or path/to/file.py:attribute")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        pipeline = load_pipeline(args.target)
        if args.command == "plan":
            print(pipeline.plan().describe())
            return 0
        pipeline.run()
    except KeyboardInterrupt:
        print("streamlet: cancelled (Ctrl-C); every task stopped and every sink closed",
              file=sys.stderr)
        return 130
    except StreamletError as exc:
        print(f"streamlet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"streamlet: job {pipeline.name!r} finished", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
