"""streamlet: Apache Flink's model of stream processing, inside one Python process.

Layers, bottom up; each imports only from the layers below it, and
``tests/test_layers.py`` imports each one on its own to keep it so:

    errors        the exception tree
    core          batches, keys, the logical graph, the planner, the runtime
                  and the primitive operators (record-at-a-time, async I/O,
                  keyed reduce), with the source seam
    connectors    sources and sinks built on the core's seams
    _stream, _pipeline, cli
                  the user-facing builder and command line

This module only re-exports the public names; importing it does nothing else.
"""

from ._pipeline import Pipeline as Pipeline
from ._stream import Collected as Collected
from ._stream import KeyedStream as KeyedStream
from ._stream import Sink as Sink
from ._stream import Stream as Stream
from .core.channels import ChannelStatistics as ChannelStatistics
from .core.functions import operator as operator
from .core.graph import DEAD_LETTER as DEAD_LETTER
from .core.operator import DeadLetter as DeadLetter
from .core.runtime import JobResult as JobResult
from .errors import InvalidKeyError as InvalidKeyError
from .errors import OperatorTimeoutError as OperatorTimeoutError
from .errors import SourceError as SourceError
from .errors import StreamletConfigError as StreamletConfigError
from .errors import StreamletError as StreamletError
from .errors import UserFunctionError as UserFunctionError

__all__ = [
    "DEAD_LETTER",
    "ChannelStatistics",
    "Collected",
    "DeadLetter",
    "InvalidKeyError",
    "JobResult",
    "KeyedStream",
    "OperatorTimeoutError",
    "Pipeline",
    "Sink",
    "SourceError",
    "Stream",
    "StreamletConfigError",
    "StreamletError",
    "UserFunctionError",
    "operator",
]
__version__ = "0.1.0"
