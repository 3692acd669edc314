"""Control messages between the coordinator and its workers.

The coordinator is the process that runs the job; each worker is a process it
started (``streamlet.cluster.workers``). They talk over two framed channels
(``streamlet.cluster.frames``, authenticated with the job's secret before a
byte is decoded): worker -> coordinator and coordinator -> worker.

::

    worker -> coordinator                 coordinator -> worker
    Hello(worker, pid, fingerprint)       Deploy(worker, workers, target, key groups)
    Failure(worker, error_type, ...)      Start()
    Deployed(worker)                      TriggerCheckpoint(checkpoint_id)
    Heartbeat(worker, records)            CheckpointComplete(checkpoint_id)
    Finished(worker)                      StopJob(), Finish(), Cancel()

What carries state (a checkpoint's part, what to restore, a worker's
result) is a pickle in a frame of type :data:`OBJECT`, read only after the
channel authenticated its peer with the job's secret.

Each message is one JSON object in one frame of type :data:`CONTROL` (below
0x80, the frame layer's own, and apart from ``codec``'s kinds 0x02-0x07), with
a ``"type"`` member naming the message. Decoding checks the type and every
field, and raises :class:`ControlError` naming what was wrong.

The *fingerprint* of a pipeline (:func:`plan_fingerprint`) is a hash of its
name, its physical plan and its ``max_parallelism``: a worker whose rebuilt
pipeline has another fingerprint runs another job, and is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from streamlet.errors import StreamletError

if TYPE_CHECKING:
    from streamlet._pipeline import Pipeline

CONTROL: Final = 0x10
"""The frame type of a control message."""
OBJECT: Final = 0x11
"""The frame type of a pickled object (state, results) between the job's processes."""


class ControlError(StreamletError, ValueError):
    """A frame that is not a well-formed control message."""


@dataclass(frozen=True)
class Hello:
    """A worker rebuilt the pipeline and is ready to be deployed."""

    TYPE: ClassVar[str] = "hello"
    worker: int
    pid: int
    fingerprint: str


@dataclass(frozen=True)
class Failure:
    """A worker failed (its pipeline did not load, or it broke while running)."""

    TYPE: ClassVar[str] = "failure"
    worker: int
    error_type: str  # the exception's qualified type name
    message: str  # str(exception)
    traceback: str  # formatted, as the worker saw it


@dataclass(frozen=True)
class Deploy:
    """What a worker runs: its place among the workers and its key groups."""

    TYPE: ClassVar[str] = "deploy"
    worker: int
    workers: int
    target: str  # module:attribute of the pipeline
    key_groups_start: int
    key_groups_stop: int  # exclusive


@dataclass(frozen=True)
class Deployed:
    TYPE: ClassVar[str] = "deployed"
    worker: int


@dataclass(frozen=True)
class Start:
    TYPE: ClassVar[str] = "start"


@dataclass(frozen=True)
class Heartbeat:
    """Alive, with the worker's one metric: the records that entered its
    channels so far (its shuffles' and its other tasks' inputs)."""

    TYPE: ClassVar[str] = "heartbeat"
    worker: int
    records: int


@dataclass(frozen=True)
class TriggerCheckpoint:
    TYPE: ClassVar[str] = "trigger_checkpoint"
    checkpoint_id: int


@dataclass(frozen=True)
class CheckpointComplete:
    """Every worker's part of the checkpoint is durable: sinks may commit."""

    TYPE: ClassVar[str] = "checkpoint_complete"
    checkpoint_id: int


@dataclass(frozen=True)
class Finished:
    """Every task of the worker has ended (its bounded inputs ran out, or it stopped)."""

    TYPE: ClassVar[str] = "finished"
    worker: int


@dataclass(frozen=True)
class StopJob:
    """Stop reading, finish what is in flight (``Pipeline.stop``)."""

    TYPE: ClassVar[str] = "stop_job"


@dataclass(frozen=True)
class Finish:
    """The job is over (its final checkpoint is complete): report and exit."""

    TYPE: ClassVar[str] = "finish"


@dataclass(frozen=True)
class Cancel:
    """Stop: the worker ends its channel to the coordinator and exits with code 0."""

    TYPE: ClassVar[str] = "cancel"


Message = (Hello | Failure | Deploy | Deployed | Start | Heartbeat | TriggerCheckpoint
           | CheckpointComplete | Finished | StopJob | Finish | Cancel)

_MESSAGES: Final[dict[str, type[Message]]] = {
    cls.TYPE: cls for cls in (Hello, Failure, Deploy, Deployed, Start, Heartbeat,
                              TriggerCheckpoint, CheckpointComplete,
                              Finished, StopJob, Finish, Cancel)}
_FIELD_TYPES: Final = {"int": int, "str": str}


def encode(message: Message) -> tuple[int, bytes]:
    """``(frame type, payload)`` of a control message."""
    body = {"type": message.TYPE, **dataclasses.asdict(message)}
    return CONTROL, json.dumps(body, separators=(",", ":")).encode()


def decode(kind: int, payload: bytes) -> Message:
    """The message in a frame; :class:`ControlError` if the frame holds none."""
    if kind != CONTROL:
        raise ControlError(f"expected a control frame (type 0x{CONTROL:02x}), got type "
                           f"0x{kind:02x}")
    try:
        body: Any = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ControlError(f"a control frame that is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ControlError("a control frame must hold a JSON object with a string 'type'")
    name = body.pop("type")
    cls = _MESSAGES.get(name)
    if cls is None:
        raise ControlError(f"unknown control message type {name!r}; known: "
                           f"{', '.join(sorted(_MESSAGES))}")
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    if set(body) != set(fields):
        raise ControlError(f"control message {name!r} has fields {sorted(body)}, expected "
                           f"{sorted(fields)}")
    for field, type_name in fields.items():
        value = body[field]
        expected = _FIELD_TYPES[str(type_name)]
        if type(value) is not expected:
            raise ControlError(f"control message {name!r}: field {field!r} must be "
                               f"{type_name}, got {type(value).__name__}")
    return cls(**body)


def encode_object(value: Any) -> tuple[int, bytes]:
    return OBJECT, pickle.dumps(value, protocol=5)


def decode_object(payload: bytes) -> Any:
    return pickle.loads(payload)  # the channel authenticated its peer: as trusted as the code


def plan_fingerprint(pipeline: Pipeline) -> str:
    """A short hash of what must be the same in every process of one job."""
    text = "\n".join((pipeline.name, str(pipeline.settings.max_parallelism),
                      pipeline.plan().describe()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
