"""Where a pipeline comes from: ``module:attribute`` both ways.

``streamlet run`` loads a pipeline from ``module:attribute`` (or
``path/to/file.py:attribute``). Worker processes (issue 7) do the same to
rebuild the pipeline of the process that started them: the graph holds
the user's functions, lambdas among them, which do not pickle, while the
module that defines them can simply be imported again. ``locate`` finds the
``module:attribute`` that gives back a given pipeline, and says how to make
one when there is none.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ._pipeline import Pipeline
from .errors import StreamletConfigError


class PipelineNotFoundError(StreamletConfigError):
    """A ``module:attribute`` that does not give a pipeline."""


def load_pipeline(target: str) -> Pipeline:
    """Resolve ``module:attribute`` or ``file.py:attribute`` to a Pipeline; an
    attribute that is a function is called and must return one."""
    module_name, sep, attribute = target.rpartition(":")
    if not sep or not module_name or not attribute:
        if target.endswith(".py"):
            raise PipelineNotFoundError(
                f"{target!r} names a file but not the pipeline in it: add the name it "
                f"has there after a colon, e.g. {target}:pipeline")
        raise PipelineNotFoundError(
            "expected module:attribute or path/to/file.py:attribute (e.g. "
            f"myapp.jobs:pipeline), got {target!r}")
    module: Any
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise PipelineNotFoundError(f"no such file: {module_name}")
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
            raise PipelineNotFoundError(f"cannot import {module_name!r}: {exc}") from exc
    obj = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PipelineNotFoundError(
                f"{module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, Pipeline) and callable(obj):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise PipelineNotFoundError(
            f"{target} is a {type(obj).__name__}, not a streamlet Pipeline")
    obj.origin = target
    return obj


def locate(pipeline: Pipeline) -> str:
    """The ``module:attribute`` another process loads to get ``pipeline`` back.

    A pipeline loaded by ``load_pipeline`` knows its target. Otherwise it must
    be a module-level attribute of an importable module, or of the script
    being run (then the target names the script's file)."""
    if pipeline.origin is not None:
        return pipeline.origin
    main = sys.modules.get("__main__")
    modules: list[ModuleType] = [main] if main is not None else []
    modules.extend(m for m in list(sys.modules.values())
                   if m is not main and isinstance(m, ModuleType))
    for module in modules:
        try:
            names = [name for name, value in vars(module).items() if value is pipeline]
        except TypeError:  # a module-like object without a __dict__
            continue
        if not names:
            continue
        if module is main or module.__name__ == "__main__":
            file = getattr(module, "__file__", None)
            if file is None:
                break  # an interactive session: nothing to import
            return f"{Path(file).resolve()}:{names[0]}"
        return f"{module.__name__}:{names[0]}"
    raise PipelineNotFoundError(
        f"pipeline {pipeline.name!r} is not a module-level name of any module, so other "
        "processes cannot build it again. Define it at module level (pipeline = "
        "sl.Pipeline(...) in a .py file) and run that file or 'streamlet run "
        "file.py:pipeline', or put its construction in a function and run "
        "'streamlet run module:function'.")
