"""``locate``: the ``module:attribute`` from which another process builds the
same pipeline again (what worker processes will do), checked by building it
in a real second process and comparing plans."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import streamlet as sl
from streamlet._locate import PipelineNotFoundError, load_pipeline, locate

JOB = textwrap.dedent("""
    import streamlet as sl

    pipeline = sl.Pipeline("located")
    (pipeline.from_iterable(range(10)).map(lambda n: n * 2)
     .key_by(lambda n: n % 3).reduce(lambda a, b: a + b).collect())

    if __name__ == "__main__":
        from streamlet._locate import locate
        print(locate(pipeline))
        print(pipeline.plan().describe())
""")


def plan_elsewhere(target: str, cwd: Path) -> str:
    """The plan of ``target`` as a fresh Python process builds it."""
    code = ("import sys; from streamlet._locate import load_pipeline; "
            "print(load_pipeline(sys.argv[1]).plan().describe())")
    return subprocess.run([sys.executable, "-c", code, target], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


def test_a_script_run_as_main_is_found_by_its_file(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    target, plan = out.split("\n", 1)
    assert target == f"{script.resolve()}:pipeline"
    assert plan_elsewhere(target, tmp_path) == plan


def test_an_imported_module_is_found_by_its_name(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "located_jobs.py").write_text(JOB)
    monkeypatch.syspath_prepend(str(tmp_path))
    import located_jobs  # noqa: PLC0415  # the module under test, written above

    assert locate(located_jobs.pipeline) == "located_jobs:pipeline"
    assert plan_elsewhere("located_jobs:pipeline", tmp_path) == (
        located_jobs.pipeline.plan().describe() + "\n")


def test_a_loaded_pipeline_remembers_where_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    target = f"{tmp_path / 'job.py'}:pipeline"
    assert locate(load_pipeline(target)) == target


def test_a_pipeline_built_inside_a_function_cannot_travel() -> None:
    def build() -> sl.Pipeline:
        p = sl.Pipeline("local")
        p.from_iterable([1]).collect()
        return p

    with pytest.raises(PipelineNotFoundError, match=r"not a module-level name.*streamlet run"):
        locate(build())
