"""The ``streamlet`` command.

``streamlet run module:attribute`` imports a module (or a ``path/to/file.py``)
and runs the ``Pipeline`` named by the attribute (or returned by it, when it
is a function). Ctrl-C cancels the job cleanly: every task is cancelled and
every source and sink closed before the command exits with status 130.

``streamlet checkpoints list STORAGE`` prints a line per checkpoint in a
checkpoint storage (a ``sqlite:///`` or ``file:///`` URL, or a path), and
``streamlet checkpoints show STORAGE ID`` one checkpoint's manifest, after
verifying its checksum. A bad URL or an unknown id exits with status 2, a
damaged checkpoint with 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ._locate import load_pipeline
from ._pipeline import Pipeline
from .core.endpoint import request, socket_path
from .errors import CheckpointError, StreamletConfigError, StreamletError
from .state.checkpoint_storage import CheckpointInfo, CheckpointStorage, open_storage


class CliError(StreamletError):
    """A command line that cannot be carried out."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlet", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline until its inputs end or Ctrl-C")
    run.add_argument("target", help="module:attribute or path/to/file.py:attribute")
    run.add_argument("--workers", type=int, metavar="N",
                     help="run on N worker processes of this machine (default: the "
                          "pipeline's own workers=, 1 unless set); docs/scaling.md")
    run.add_argument("--from-savepoint", type=int, metavar="ID", dest="from_checkpoint",
                     help="start from this savepoint (or checkpoint) of the pipeline's "
                          "checkpoint storage instead of the latest checkpoint")
    run.add_argument("--health-port", type=int, metavar="PORT",
                     help="serve /healthz (alive), /readyz (ready) and / (status, JSON) "
                          "over HTTP on this port, for orchestrators")
    run.add_argument("--health-host", default="127.0.0.1", metavar="HOST",
                     help="the address the health endpoint listens on (default 127.0.0.1; "
                          "0.0.0.0 for probes from outside, as in Kubernetes)")
    run.add_argument("--health-file", metavar="PATH",
                     help="a status file (JSON) that exists while the job is ready and is "
                          "rewritten every 5 s, for probes that run a command")
    run.add_argument("--log-level", default="INFO",
                     choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="log to stderr from this level (default INFO), unless the "
                          "program configured logging itself")
    savepoint = commands.add_parser(
        "savepoint", help="take a savepoint of a running job (one with checkpointing), "
                          "through its control socket; prints its id")
    savepoint.add_argument("target", help="the pipeline the job runs: module:attribute or "
                                          "path/to/file.py:attribute")
    plan = commands.add_parser("plan", help="print the tasks and channels a pipeline runs as")
    plan.add_argument("target", help="module:attribute or path/to/file.py:attribute")
    checkpoints = commands.add_parser("checkpoints", help="list and inspect stored checkpoints")
    actions = checkpoints.add_subparsers(dest="action", required=True)
    storage_help = ("sqlite:///relative.db, sqlite:////absolute.db, file:///dir, or a path "
                    "(ending in .db: a SQLite file, else a directory)")
    listing = actions.add_parser("list", help="one line per checkpoint: job, id, kind, time, "
                                 "size")
    listing.add_argument("storage", help=storage_help)
    listing.add_argument("--job", help="only this job's checkpoints")
    show = actions.add_parser("show", help="one checkpoint's manifest, checksum verified")
    show.add_argument("storage", help=storage_help)
    show.add_argument("id", type=int, help="the checkpoint id")
    show.add_argument("--job", help="the job, when several have a checkpoint with this id")
    return parser


class _UsageError(CliError):
    """A storage or checkpoint that is not there: exit status 2, like a bad argument."""


def _utc(ms: int) -> str:
    """ISO 8601 in UTC, to the millisecond, computed exactly (no float seconds)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _open(url: str) -> CheckpointStorage:
    try:
        storage = open_storage(url)
    except StreamletConfigError as exc:
        raise _UsageError(str(exc)) from None
    if not storage.path.exists():
        hint = ""
        if "://" not in url and ":" in url:  # myjobs:pipeline, job.py:pipeline
            hint = (". This command takes the pipeline's checkpoint storage (its "
                    "Checkpointing(storage=...): file:///dir, sqlite:///c.db), not the "
                    "pipeline")
        raise _UsageError(f"no checkpoint storage at {storage.path} (from {url!r}): nothing "
                          f"is there{hint}")
    return storage


def _list_checkpoints(storage: CheckpointStorage, job: str | None) -> int:
    infos = storage.list(job)
    if not infos:
        print(f"streamlet: no checkpoints{f' of job {job!r}' if job else ''} in {storage.url}",
              file=sys.stderr)
        return 0
    rows = [(info.job, str(info.checkpoint_id), info.kind, _utc(info.taken_at),
             f"{info.size} bytes") for info in infos]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}  "
              f"{row[3]}  {row[4]:>{widths[4]}}")
    return 0


def _find(storage: CheckpointStorage, checkpoint_id: int, job: str | None) -> CheckpointInfo:
    found = [info for info in storage.list(job) if info.checkpoint_id == checkpoint_id]
    if len(found) > 1:
        jobs = ", ".join(repr(info.job) for info in found)
        raise _UsageError(f"checkpoint {checkpoint_id} exists for jobs {jobs} in "
                          f"{storage.url}: pass --job NAME")
    if not found:
        of_job = f" of job {job!r}" if job else ""
        ids = sorted({info.checkpoint_id for info in storage.list(job)})
        there = f"its ids are {', '.join(map(str, ids))}" if ids else "it has none"
        raise _UsageError(f"no checkpoint {checkpoint_id}{of_job} in {storage.url}; {there} "
                          "(streamlet checkpoints list shows them)")
    return found[0]


def _show_checkpoint(storage: CheckpointStorage, checkpoint_id: int, job: str | None) -> int:
    info = _find(storage, checkpoint_id, job)
    print(f"{info.kind} {info.checkpoint_id} of job {info.job!r}")
    print(f"taken at  {_utc(info.taken_at)}")
    print(f"location  {info.location}")
    print(f"size      {info.size} bytes")
    try:
        snapshot = storage.read(info.job, info.checkpoint_id)
    except CheckpointError as exc:
        for name, size in info.operator_sizes.items():
            print(f"  operator {name!r}: {size} bytes")
        print(f"streamlet: {exc}", file=sys.stderr)
        return 1
    print(f"max parallelism {snapshot.max_parallelism}; checksum verified")
    print(f"operators ({len(snapshot.operators)}):")
    width = max((len(repr(name)) for name in snapshot.operators), default=0)
    for name, state in snapshot.operators.items():
        groups = len(state.key_groups)
        print(f"  {name!r:<{width}}  {info.operator_sizes[name]} bytes  {groups} key "
              f"group{'' if groups == 1 else 's'}  (meta {len(state.meta)} bytes)")
    return 0


def _checkpoints(args: argparse.Namespace) -> int:
    try:
        with _open(args.storage) as storage:
            if args.action == "list":
                return _list_checkpoints(storage, args.job)
            return _show_checkpoint(storage, args.id, args.job)
    except _UsageError as exc:
        print(f"streamlet: {exc}", file=sys.stderr)
        return 2
    except StreamletError as exc:
        print(f"streamlet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _savepoint(pipeline: Pipeline) -> int:
    config = pipeline.settings.checkpointing
    if config is None:
        raise CliError(f"pipeline {pipeline.name!r} has no checkpointing, so no savepoints; "
                       "give it checkpointing=sl.Checkpointing(...)")
    path = socket_path(pipeline.name, config.storage_url(pipeline.name))
    reply = asyncio.run(request(path, "savepoint"))
    if not reply.get("ok"):
        raise CliError(f"job {pipeline.name!r} did not take a savepoint: {reply.get('error')}")
    print(reply["checkpoint_id"])
    print(f"streamlet: savepoint {reply['checkpoint_id']} of job {pipeline.name!r} is in "
          f"{config.storage_url(pipeline.name)}", file=sys.stderr)
    return 0


def _configure_logging(level: str) -> None:
    """What a sidecar's operator reads: what the job consumes, where its
    checkpoints go, each checkpoint; on stderr, one line per event."""
    root = logging.getLogger()
    if root.handlers:
        return  # the program set up logging itself
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # the Kafka client's INFO lines are about its own bookkeeping
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for handler in root.handlers:
        handler.addFilter(_Repeats())


class _Repeats(logging.Filter):
    """Lets a client library's message through once per ``QUIET_S`` seconds.

    While a broker is down, aiokafka says "Unable to update metadata" thousands
    of times a second; one line every half minute, with how many were held
    back, says as much.
    """

    QUIET_S = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[tuple[str, object], tuple[float, int]] = {}  # -> (shown at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("streamlet"):
            return True  # our own lines are each worth reading
        what = (record.name, record.msg)
        shown, held = self.last.get(what, (float("-inf"), 0))
        if record.created - shown < self.QUIET_S:
            self.last[what] = (shown, held + 1)
            return False
        if len(self.last) > 1_000:
            self.last.clear()
        self.last[what] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.QUIET_S:g} s)"
        return True


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "checkpoints":
        return _checkpoints(args)
    try:
        pipeline = load_pipeline(args.target)
        if args.command == "plan":
            print(pipeline.plan().describe())
            return 0
        if args.command == "savepoint":
            return _savepoint(pipeline)
        _configure_logging(args.log_level)
        if args.workers is not None:
            pipeline.with_workers(args.workers)
        result = pipeline.run(from_checkpoint=args.from_checkpoint, stop_on_signals=True,
                              health_port=args.health_port, health_host=args.health_host,
                              health_file=args.health_file)
    except KeyboardInterrupt:
        print("streamlet: cancelled (Ctrl-C); every task stopped and every sink closed",
              file=sys.stderr)
        return 130
    except StreamletError as exc:
        print(f"streamlet: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    resumed = ("" if result.restored_from is None
               else f" (resumed from checkpoint {result.restored_from})")
    done = (f"; last checkpoint {result.checkpoints[-1].checkpoint_id}"
            if result.checkpoints else "")
    if result.restarts:
        done += f"; restarted {result.restarts} time{'s' if result.restarts > 1 else ''}"
    how = ("finished" if pipeline._stop_requested is None
           else f"stopped on {pipeline._stop_requested}")
    print(f"streamlet: job {pipeline.name!r} {how}{resumed}{done}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
