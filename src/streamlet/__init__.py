"""streamlet: Apache Flink's model of stream processing, inside one Python process.

Layers, bottom up; each imports only from the layers below it, and
``tests/test_layers.py`` imports each one on its own to keep it so:

    errors        the exception tree
    time          clocks, durations, watermark strategies, timer queues
    state         key groups, state descriptors and handles, state backends
    core          batches, the logical graph, the planner, the runtime and the
                  primitive operators (record-at-a-time, async I/O, keyed
                  reduce, timestamps, process functions), with the source seam
    connectors    sources and sinks built on the core's seams
    _stream, _pipeline, cli, testing
                  the user-facing builder, command line and test harness

This module only re-exports the public names; importing it does nothing else.
"""

from . import windows as windows
from ._pipeline import Pipeline as Pipeline
from ._stream import Collected as Collected
from ._stream import ConnectedStreams as ConnectedStreams
from ._stream import KeyedStream as KeyedStream
from ._stream import Sink as Sink
from ._stream import Stream as Stream
from ._stream import WindowedStream as WindowedStream
from .core.channels import ChannelStatistics as ChannelStatistics
from .core.checkpoints import Checkpointing as Checkpointing
from .core.functions import operator as operator
from .core.functions_process import Context as Context
from .core.functions_process import CoProcessFunction as CoProcessFunction
from .core.functions_process import KeyedProcessFunction as KeyedProcessFunction
from .core.functions_process import ProcessFunction as ProcessFunction
from .core.graph import DEAD_LETTER as DEAD_LETTER
from .core.operator import DeadLetter as DeadLetter
from .core.restart import RestartStrategy as RestartStrategy
from .core.runtime import JobResult as JobResult
from .core.two_phase import TwoPhaseCommitSink as TwoPhaseCommitSink
from .errors import CheckpointError as CheckpointError
from .errors import InvalidKeyError as InvalidKeyError
from .errors import InvalidTimestampError as InvalidTimestampError
from .errors import OperatorTimeoutError as OperatorTimeoutError
from .errors import SourceError as SourceError
from .errors import StateAccessError as StateAccessError
from .errors import StreamletConfigError as StreamletConfigError
from .errors import StreamletError as StreamletError
from .errors import UserFunctionError as UserFunctionError
from .state.descriptors import AggregateFunction as AggregateFunction
from .state.descriptors import AggregatingState as AggregatingState
from .state.descriptors import ListState as ListState
from .state.descriptors import MapState as MapState
from .state.descriptors import ReducingState as ReducingState
from .state.descriptors import ValueState as ValueState
from .state.sqlite import SQLiteState as SQLiteState
from .time.clock import Clock as Clock
from .time.clock import SystemClock as SystemClock
from .time.watermarks import WatermarkGenerator as WatermarkGenerator
from .time.watermarks import WatermarkStrategy as WatermarkStrategy
from .windows import agg as agg

__all__ = [
    "DEAD_LETTER",
    "AggregateFunction",
    "AggregatingState",
    "ChannelStatistics",
    "CheckpointError",
    "Checkpointing",
    "Clock",
    "CoProcessFunction",
    "Collected",
    "ConnectedStreams",
    "Context",
    "DeadLetter",
    "InvalidKeyError",
    "InvalidTimestampError",
    "JobResult",
    "KeyedProcessFunction",
    "KeyedStream",
    "ListState",
    "MapState",
    "OperatorTimeoutError",
    "Pipeline",
    "ProcessFunction",
    "ReducingState",
    "SQLiteState",
    "Sink",
    "SourceError",
    "StateAccessError",
    "Stream",
    "StreamletConfigError",
    "StreamletError",
    "SystemClock",
    "TwoPhaseCommitSink",
    "UserFunctionError",
    "ValueState",
    "WatermarkGenerator",
    "WatermarkStrategy",
    "WindowedStream",
    "agg",
    "operator",
    "windows",
]
__version__ = "0.1.0"
