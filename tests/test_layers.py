"""Each layer imports on its own, and never pulls in a layer above it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "streamlet"

# module -> prefixes it must not load
LAYERS = {
    "streamlet.native": ["streamlet.errors", "streamlet.time", "streamlet.state", "streamlet.core",
                         "streamlet.connectors", "streamlet.cluster", "streamlet._"],
    "streamlet.errors": ["streamlet.core", "streamlet.connectors", "streamlet._",
                         "streamlet.time", "streamlet.state"],
    "streamlet.time.watermarks": ["streamlet.state", "streamlet.core", "streamlet.connectors",
                                  "streamlet._"],
    "streamlet.time.timers": ["streamlet.state", "streamlet.core", "streamlet._"],
    "streamlet.state.descriptors": ["streamlet.core", "streamlet.connectors", "streamlet._"],
    "streamlet.core.process": ["streamlet.connectors", "streamlet._stream", "streamlet.testing"],
    "streamlet.core.runtime": ["streamlet.connectors", "streamlet._stream",
                               "streamlet._pipeline", "streamlet.cli"],
    "streamlet.core.stateless": ["streamlet.connectors", "streamlet._stream"],
    "streamlet.connectors.collections": ["streamlet._stream", "streamlet._pipeline",
                                         "streamlet.cli"],
    "streamlet.cluster.frames": ["streamlet.connectors", "streamlet._", "streamlet.cli",
                                 "streamlet.state"],
    "streamlet.cluster.codec": ["streamlet.connectors", "streamlet._", "streamlet.cli",
                                "streamlet.state"],
    "streamlet.cluster.results": ["streamlet.connectors", "streamlet._", "streamlet.cli"],
    "streamlet.cluster.control": ["streamlet.connectors", "streamlet._", "streamlet.cli",
                                  "streamlet.state", "streamlet.core"],
    # the worker process imports streamlet._locate (and so the whole library) itself
    "streamlet.cluster.workers": ["streamlet.connectors", "streamlet._", "streamlet.cli"],
    "streamlet.cluster.worker": ["streamlet.connectors", "streamlet._", "streamlet.cli"],
    "streamlet.cluster.shuffle": ["streamlet.connectors", "streamlet._", "streamlet.cli",
                                  "streamlet.windows"],
}


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_layer_imports_alone(module: str) -> None:
    code = (f"import sys, {module}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('streamlet')))")
    # importing streamlet.core.x runs streamlet/__init__ first; block that to see the layer alone
    code = ("import importlib.util, sys, types\n"
            f"pkg = types.ModuleType('streamlet'); pkg.__path__ = [{str(SRC)!r}]\n"
            "sys.modules['streamlet'] = pkg\n" + code)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    for loaded in out:
        for banned in LAYERS[module]:
            assert not loaded.startswith(banned), f"{module} pulls in {loaded}"


def test_importing_streamlet_has_no_side_effects() -> None:
    code = ("import asyncio, threading, logging\n"
            "before = threading.active_count()\n"
            "import streamlet\n"
            "assert threading.active_count() == before, 'a thread started'\n"
            "assert asyncio.get_event_loop_policy()._local._loop is None, 'a loop was made'\n"
            "assert not logging.getLogger().handlers, 'logging was configured'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_kafka_loads_only_for_a_job_that_uses_it() -> None:
    code = ("import sys, streamlet\n"
            "assert not [m for m in sys.modules if m.startswith(('aiokafka', "
            "'streamlet.connectors.kafka'))], 'import streamlet loaded Kafka'\n"
            "p = streamlet.Pipeline('k')\n"
            "p.from_iterable([1]).to_kafka('t', bootstrap_servers='127.0.0.1:1')\n"
            "assert 'aiokafka' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nothing_reads_the_wall_clock_outside_the_time_package() -> None:
    pattern = re.compile(r"loop\.time\(\)|time\.time\(|time\.monotonic\(|datetime\.now\(")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py") if "time" not in path.relative_to(SRC).parts[:1]
        for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)
    ]
    assert not offenders
