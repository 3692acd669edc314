"""Run a plan: one asyncio task per task of the plan, joined by channels.

The job ends when every task has seen the end of all its inputs. The first
failure anywhere (a task, or a background task an operator spawned) cancels
everything else and is raised from ``run``; cancelling ``run`` cancels every
task. Either way every operator and reader is closed before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamlet.errors import CheckpointError, StreamletError
from streamlet.state.checkpoint_storage import CheckpointStorage, open_storage
from streamlet.state.keys import key_group_range
from streamlet.state.snapshots import (
    KeyedRows,
    OperatorState,
    Snapshot,
    dumps,
    loads,
    main_operators,
    merge_chain,
    parallelism_of,
    subtask_metas,
)
from streamlet.time.clock import Clock, SystemClock

from .batch import Batch
from .channels import Channel, ChannelOutput, ChannelStatistics, InputGate
from .checkpoints import CheckpointCoordinator, Checkpointing, CheckpointStats, Participant
from .control import MAX_WATERMARK, Barrier, Watermark, WatermarkStatus
from .endpoint import ControlEndpoint, serve_savepoints
from .graph import Edge, Node
from .mailbox import MAIL, Mailbox
from .operator import Chained, Operator, OperatorContext, Output, fan_out
from .plan import Plan, TaskSpec, is_chained
from .source import SourceReader

log = logging.getLogger("streamlet.checkpoints")


async def _nothing() -> None:
    return None


def _gate_name(task: TaskSpec) -> str:
    """Under what name a task's input gate keeps its inputs' watermarks."""
    return f"{task.head.name}#inputs"

@dataclass(frozen=True)
class RuntimeOptions:
    batch_size: int = 1024
    channel_capacity: int = 8
    max_parallelism: int = 128
    scheduling_seed: int = 0
    clock: Clock = field(default_factory=SystemClock)
    job_name: str = "job"
    checkpointing: Checkpointing | None = None
    restore_id: int | None = None  # restore this checkpoint or savepoint, not the latest
    subtask: int = 0  # which worker process of a parallel job this is
    parallelism: int = 1  # how many there are


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports: the statistics of every channel, the
    counters of operators that keep some (a window's ``dropped_late``), the
    checkpoints it completed, and the checkpoint it resumed from."""

    channels: dict[str, ChannelStatistics]
    operators: dict[str, dict[str, int]] = field(default_factory=dict)
    checkpoints: list[CheckpointStats] = field(default_factory=list)
    restored_from: int | None = None  # the checkpoint the job resumed from
    restarts: int = 0  # how often it failed and started again (its restart strategy)


JOB_GC_THRESHOLDS = (10_000, 10, 100)
"""gc thresholds while a job runs (Pipeline.run, and every worker process):
young collections every 10,000 net allocations (about ten batches' worth),
full ones considered 10x rarer."""


def refuse_stop_without_checkpoints(options: RuntimeOptions) -> None:
    if options.checkpointing is None:
        raise StreamletError(
            "stop(): the job has no checkpointing, so it cannot keep its state for a "
            "next run; cancel it instead")


class Distribution:
    """How one worker process's part of a parallel job (``workers=N``) reaches
    the rest of it: the other workers' halves of each shuffle, and the
    coordinator that drives checkpoints. ``streamlet.cluster.worker`` makes
    it; a job of one process has none."""

    snapshot: Snapshot | None = None  # what this worker restores

    def input_channels(self, consumer: Node, index: int, capacity: int,
                       spawn: Any) -> dict[int, Channel]:
        """The channels that bring the other workers' records into input
        ``index`` of ``consumer`` (a shuffle), by worker."""
        raise NotImplementedError

    def output(self, consumer: Node, index: int, local: Channel, batch_size: int) -> Output:
        """What a producer writes into a shuffle: ``local`` for the records this
        worker owns, the other workers for the rest."""
        raise NotImplementedError

    def checkpoints(self, job: str, config: Checkpointing, clock: Clock,
                    max_parallelism: int, spawn: Any) -> CheckpointCoordinator:
        raise NotImplementedError

    async def finished(self) -> None:
        """Every task of this worker has ended: wait until the whole job has
        (the coordinator takes the final checkpoint meanwhile)."""
        raise NotImplementedError


class _Supervisor:
    """Watches every task of the job; the first failure stops the job."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None
        self._failed = asyncio.get_running_loop().create_future()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # read even when not the first: it counts as retrieved
        if exc is not None and self.failure is None:
            self.failure = exc
            if not self._failed.done():
                self._failed.set_result(None)

    async def wait(self, main: list[asyncio.Task[None]]) -> None:
        """Until every main task is done, or anything fails (raised here)."""
        pending: set[asyncio.Future[None]] = {*main, self._failed}
        while len(pending) > 1 and not self._failed.done():
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        # A task can finish with an error before its done-callbacks have run;
        # look at the tasks themselves rather than trust the callbacks' order.
        for task in [*main, *self.tasks]:
            if task.done():
                self._done(task)
        if self.failure is not None:
            raise self.failure

    async def failed(self) -> None:
        """Until something fails."""
        await asyncio.shield(self._failed)

    async def cancel_all(self) -> None:
        pending = [t for t in self.tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class Job:
    """One run of a plan."""

    def __init__(self, plan: Plan, options: RuntimeOptions,
                 distribution: Distribution | None = None) -> None:
        self.plan = plan
        self.options = options
        self.distribution = distribution
        self._inactive: set[int] = set()  # sources this subtask does not read
        self.operators: dict[int, Operator] = {}
        self.readers: dict[int, SourceReader] = {}
        self.channels: dict[tuple[int, int], Channel] = {}  # (consumer node, input index)
        self._remote_channels: list[Channel] = []  # fed by other workers (shuffle pumps)
        self._source_outputs: dict[int, Output] = {}
        # sources whose consumers all want to hear of a split before its first record
        self._announces: dict[int, bool] = {}
        self.mailboxes: dict[int, Mailbox] = {id(t): Mailbox() for t in plan.tasks}
        self.coordinator: CheckpointCoordinator | None = None
        self.participants: dict[int, Participant] = {}  # by id(task)
        self.gates: dict[int, InputGate] = {}  # by id(task), for tasks that read channels
        self.restored_from: int | None = None
        self.running = asyncio.Event()  # set once every task has started
        self.stopping = False  # stop() was called
        self._increments: dict[str, int] = {}  # operator -> increments its restore merged

    # -- building ----------------------------------------------------------------

    def _build(self, spawn: Any) -> None:
        graph = self.plan.graph
        opts = self.options
        for node in graph.nodes:
            if node.kind == "source":
                assert node.make_source is not None
                reader = self.readers[node.id] = node.make_source()
                if opts.parallelism > 1 and not reader.assign(opts.subtask, opts.parallelism):
                    self._inactive.add(node.id)
            else:
                assert node.make_operator is not None
                self.operators[node.id] = node.make_operator()
        for node in graph.nodes:
            for index, inp in enumerate(node.inputs):
                if not is_chained(node):
                    name = f"{inp.node.name}->{node.name}"
                    if len(node.inputs) > 1:
                        name += f"#{index}"
                    self.channels[(node.id, index)] = Channel(name, opts.channel_capacity)
        consumers = graph.consumers()
        for node in graph.nodes:
            main: list[Output] = []
            side: dict[str, list[Output]] = {}
            for consumer, inp in consumers[node.id]:
                target = self._output_to(consumer, inp)
                if inp.tag is None:
                    main.append(target)
                else:
                    side.setdefault(inp.tag, []).append(target)
            op = self.operators.get(node.id)
            if op is not None:
                op.wire(fan_out(main), {tag: fan_out(outs) for tag, outs in side.items()})
                mailbox = self.mailboxes[id(self.plan.task_of[node.id])]
                op.open(OperatorContext(spawn, opts.max_parallelism, opts.clock, mailbox,
                                        subtask=opts.subtask, parallelism=opts.parallelism))
            else:
                self._source_outputs[node.id] = fan_out(main)
                outs = consumers[node.id]
                self._announces[node.id] = bool(outs) and all(
                    is_chained(c) and getattr(self.operators.get(c.id),
                                              "takes_split_announcements", False)
                    for c, _ in outs)

    def _output_to(self, consumer: Node, inp: Any) -> Output:
        if is_chained(consumer):
            return Chained(self.operators[consumer.id])
        index = consumer.inputs.index(inp)
        channel = self.channels[(consumer.id, index)]
        if self.distribution is not None and inp.edge is Edge.HASH:
            return self.distribution.output(consumer, index, channel, self.options.batch_size)
        return ChannelOutput(channel, self.options.batch_size)

    def _gate_channels(self, task: TaskSpec, spawn: Any
                       ) -> tuple[list[Channel], list[int], set[int]]:
        """A task's input channels; for each, the input of the head it feeds (in
        a parallel job a shuffled input is one channel per worker); and which
        of them come from a worker that reads none of the sources behind them."""
        channels: list[Channel] = []
        inputs: list[int] = []
        quiet: set[int] = set()
        me = self.options.subtask
        for index, inp in enumerate(task.head.inputs):
            local = self.channels[(task.head.id, index)]
            by_worker = {me: local}
            if self.distribution is not None and inp.edge is Edge.HASH:
                remote = self.distribution.input_channels(
                    task.head, index, self.options.channel_capacity, spawn)
                self._remote_channels += remote.values()
                by_worker.update(remote)
                reading = self._reading_workers(inp.node)
                quiet.update(len(channels) + i for i, worker in enumerate(sorted(by_worker))
                             if worker not in reading)
            channels += [by_worker[worker] for worker in sorted(by_worker)]
            inputs += [index] * len(by_worker)
        return channels, inputs, quiet

    def all_channels(self) -> list[Channel]:
        """Every channel this job's tasks read, the shuffles' incoming ones too."""
        return [*self.channels.values(), *self._remote_channels]

    def _reading_workers(self, producer: Node) -> set[int]:
        """The workers whose ``producer`` can emit anything: those that read a
        source behind it (not across a shuffle; behind a shuffle, all do).

        A source that is not split is read by worker 0 alone; the other
        workers' copies of its chain end at once and say so on their
        channels, but not before the reading worker's first records may have
        arrived. A consumer that waited for those channels would hold its
        watermark back where one process would not (late records let through,
        timers fired late), so it knows them as ended from the start."""
        workers = range(self.options.parallelism)
        reading: set[int] = set()
        stack, seen = [producer], set()
        while stack:
            node = stack.pop()
            if node.id in seen:
                continue
            seen.add(node.id)
            if node.kind == "source":
                reader = self.readers[node.id]
                reading.update(w for w in workers if reader.reads_on(w, len(workers)))
            for inp in node.inputs:
                if inp.edge is Edge.HASH:
                    return set(workers)
                stack.append(inp.node)
        return reading

    # -- running -----------------------------------------------------------------

    async def _run_source(self, task: TaskSpec, output: Output) -> None:
        reader = self.readers[task.head.id]
        mailbox = self.mailboxes[id(task)]
        sleep = asyncio.sleep
        reading: asyncio.Task[Batch | Watermark | None] | None = None
        announces = self._announces.get(task.head.id, False)
        try:
            while task.head.id not in self._inactive:
                if not mailbox.in_use:  # the common case: nothing else to wait for
                    batch = await reader.next_batch()
                else:
                    # The mail runs while the read goes on, but not past the
                    # moment the read has a batch: the reader counts a batch in
                    # its position as it returns it, so the batch goes out before
                    # the next action, which may be a checkpoint taking the
                    # position and sending its barrier. (An action can await, a
                    # source committing its offsets to Kafka, and the read can
                    # finish meanwhile.)
                    while mailbox and (reading is None or not reading.done()):
                        await mailbox.mail.popleft()()
                    if (reading is None or not reading.done()) and self.stopping:
                        break
                    if reading is None:
                        reading = asyncio.ensure_future(reader.next_batch())
                    if not reading.done():
                        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                        def wake(woken: asyncio.Future[None] = woken) -> None:
                            if not woken.done():
                                woken.set_result(None)
                        mailbox.wake = wake
                        await asyncio.wait((reading, woken), return_when=asyncio.FIRST_COMPLETED)
                        if not reading.done():
                            continue
                    batch = reading.result()
                    reading = None
                if batch is None:
                    break
                if isinstance(batch, Watermark):
                    await output.watermark(batch.timestamp)
                elif batch.values or (announces and batch.split is not None):
                    await output.push(batch)  # (an empty one announces a split)
                await sleep(0)  # let other tasks take a turn between batches
        finally:
            if reading is not None and not reading.done():
                reading.cancel()  # its records were not handed out: the position is before them
        if not self.stopping:
            # A bounded input has ended: all event time has passed. (A job asked to
            # stop has not seen the end of its input: its windows stay open, in its
            # final checkpoint, for the next run.)
            await output.watermark(MAX_WATERMARK)
        await mailbox.run_all()
        await output.end()
        self._finished(task)

    async def _run_gate(self, task: TaskSpec, gate: InputGate) -> None:
        head = self.operators[task.head.id]
        mailbox = self.mailboxes[id(task)]
        receive = gate.receive
        process = head.process
        two_inputs = head.two_inputs
        sleep = asyncio.sleep
        while True:
            item = await receive()
            kind = type(item)
            if kind is Batch:
                if two_inputs:
                    await head.process_input(gate.last_input, item)
                else:
                    await process(item)
            elif kind is Watermark:
                await head.on_watermark(item.timestamp)
            elif kind is WatermarkStatus:
                await head.on_status(item.idle)
            elif kind is Barrier:
                if self.coordinator is not None and len(gate.channels) > 1:
                    self.coordinator.acknowledge(item.checkpoint_id, _gate_name(task),
                                                 OperatorState(dumps(gate.state()), {}))
                await head.on_barrier(item.checkpoint_id)
            elif item is MAIL:
                await mailbox.run_all()
            else:
                break
            await sleep(0)
        await mailbox.run_all()
        await head.end_input()
        self._finished(task)

    async def run(self) -> JobResult:
        supervisor = _Supervisor()
        rng = random.Random(self.options.scheduling_seed)
        storage = None
        endpoint: ControlEndpoint | None = None
        try:
            snapshot: Snapshot | None = None
            distribution = self.distribution
            if self.options.checkpointing is not None:
                if distribution is None:
                    storage, snapshot = await self._open_checkpoints(supervisor.spawn)
                else:
                    snapshot = distribution.snapshot
                    opts = self.options
                    self.coordinator = distribution.checkpoints(
                        opts.job_name, self.options.checkpointing, opts.clock,
                        opts.max_parallelism, supervisor.spawn)
            self._build(supervisor.spawn)
            for task in self.plan.tasks:
                if not task.is_source:
                    channels, inputs, quiet = self._gate_channels(task, supervisor.spawn)
                    self.gates[id(task)] = InputGate(channels, rng, self.mailboxes[id(task)],
                                                     inputs, quiet)
            if self.coordinator is not None:
                self._restore(snapshot)
                self._join_checkpoints()
            main = []
            for task in self.plan.tasks:
                if task.is_source:
                    coro = self._run_source(task, self._source_outputs[task.head.id])
                else:
                    coro = self._run_gate(task, self.gates[id(task)])
                main.append(supervisor.spawn(coro, f"task {task.name}"))
            if self.coordinator is not None:
                self.coordinator.start()
                if distribution is None:
                    endpoint = await serve_savepoints(
                        self.options.job_name, self.options.checkpointing, self.coordinator)
            self.running.set()
            await supervisor.wait(main)
            if distribution is not None:
                finished = supervisor.spawn(distribution.finished(), "end of the job")
                await supervisor.wait([finished])
            elif self.coordinator is not None:
                await self._final_checkpoint(supervisor)
        finally:
            if endpoint is not None:
                await endpoint.close()
            if self.coordinator is not None:
                self.coordinator.stop()
            await supervisor.cancel_all()
            close_errors = await self._close_all()
            if storage is not None:
                storage.close()
        if close_errors:  # only when nothing worse is already on its way out
            raise StreamletError(
                f"{len(close_errors)} operator(s) failed to close: {close_errors[0]!r}"
            ) from close_errors[0]
        return JobResult({c.name: c.statistics() for c in self.all_channels()},
                         {op.name: op.statistics() for op in self.operators.values()
                          if op.statistics()},
                         [] if self.coordinator is None else list(self.coordinator.completed),
                         self.restored_from)

    def stop(self) -> None:
        """Stop reading, finish what is in flight, take a final checkpoint, end.

        Every source stops between two batches, without the end-of-input
        watermark (the input has not ended: windows stay open), and the job
        ends as a bounded one does, with its final checkpoint; started again,
        it resumes where its sources stopped. Needs checkpointing: without
        it, stopping would lose the state, so cancel the job instead."""
        refuse_stop_without_checkpoints(self.options)
        self.stopping = True
        for task in self.plan.tasks:
            if task.is_source:
                self.mailboxes[id(task)].post(_nothing)  # wakes a source waiting to read

    # -- checkpoints ---------------------------------------------------------------

    async def _open_checkpoints(self, spawn: Any) -> tuple[CheckpointStorage, Snapshot | None]:
        opts = self.options
        config = opts.checkpointing
        assert config is not None
        storage = open_storage(config.storage_url(opts.job_name))
        log.info("job %r checkpoints every %d ms to %s", opts.job_name, config.interval_ms,
                 storage.url)
        snapshot = await asyncio.to_thread(self._restorable, storage)
        first_id = await asyncio.to_thread(storage.next_id, opts.job_name)
        self.coordinator = CheckpointCoordinator(
            opts.job_name, config, storage, opts.clock, opts.max_parallelism, first_id, spawn)
        return storage, snapshot

    def _restorable(self, storage: CheckpointStorage) -> Snapshot | None:
        """The checkpoint to start from, its incremental parts merged with the
        checkpoints they build on: the chosen one, or the newest that can be
        read whole (a damaged one, or one whose base is damaged, is passed over
        with a WARNING)."""
        job, wanted = self.options.job_name, self.options.restore_id
        if wanted is not None:
            return self._merged(storage, storage.read(job, wanted))
        snapshot = storage.latest(job)
        while snapshot is not None:
            try:
                return self._merged(storage, snapshot)
            except CheckpointError as exc:
                older = [info.checkpoint_id for info in storage.list(job)
                         if info.checkpoint_id < snapshot.checkpoint_id]
                log.warning("checkpoint %d of job %r cannot be restored: %s; %s",
                            snapshot.checkpoint_id, job, exc,
                            f"trying checkpoint {older[-1]}" if older else "none is left")
                snapshot = None
                while older and snapshot is None:
                    try:
                        snapshot = storage.read(job, older.pop())
                    except CheckpointError as damaged:
                        log.warning("%s", damaged)
        return None

    def _merged(self, storage: CheckpointStorage, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with every incremental operator state merged down its chain."""
        if not snapshot.bases:
            return snapshot
        operators = dict(snapshot.operators)
        for name, base in snapshot.bases.items():
            chain = [snapshot.operators[name]]
            next_base: int | None = base
            while next_base is not None:
                older = storage.read(snapshot.job, next_base)
                if name not in older.operators:
                    raise CheckpointError(
                        f"checkpoint {next_base} of job {snapshot.job!r}, which checkpoint "
                        f"{snapshot.checkpoint_id} builds on, has no state for {name!r}")
                chain.append(older.operators[name])
                next_base = older.bases.get(name)
            chain.reverse()
            operators[name] = merge_chain(chain, snapshot.max_parallelism)
            self._increments[name] = len(chain) - 1
        return dataclasses.replace(snapshot, operators=operators, bases={})

    def _restore(self, snapshot: Snapshot | None) -> None:
        """Put a checkpoint's state back, before anything runs: readers seek to
        their positions, operators take their state (matched by name). In a
        parallel job each subtask takes its own key groups, and the non-keyed
        parts of the subtask it replaces, or, when the number of workers
        changed, what the operator makes of all of them (``rescale_meta``)."""
        if snapshot is None:
            return
        config = self.options.checkpointing
        assert config is not None
        names = {node.name: node.id for node in self.plan.graph.nodes}
        gate_names = {_gate_name(task) for task in self.plan.tasks if not task.is_source}
        unknown = sorted(set(main_operators(snapshot)) - set(names) - gate_names)
        if unknown and not config.allow_non_restored_state:
            raise CheckpointError(
                f"checkpoint {snapshot.checkpoint_id} of job {snapshot.job!r} has state for "
                f"operators this job does not have: {unknown}. Give those operators their "
                "old names (name=...), or pass Checkpointing(allow_non_restored_state=True) "
                "to drop their state.")
        gates = {_gate_name(task): gate for task in self.plan.tasks
                 if (gate := self.gates.get(id(task))) is not None}
        me, parallelism = self.options.subtask, self.options.parallelism
        rescaled = parallelism_of(snapshot) != parallelism
        owned = key_group_range(me, parallelism, snapshot.max_parallelism)
        for name in main_operators(snapshot):
            metas = subtask_metas(snapshot, name)
            if name in gates:
                meta = metas[0] if rescaled else metas[me]
                if meta:
                    gates[name].restore(loads(meta))
                continue
            node_id = names.get(name)
            if node_id is None:
                continue
            reader = self.readers.get(node_id)
            if reader is not None:
                if rescaled:
                    reader.seek(reader.merge_positions([loads(m) for m in metas if m]))
                elif metas[me]:
                    reader.seek(loads(metas[me]))
                continue
            operator = self.operators[node_id]
            groups = snapshot.operators[name].key_groups
            if parallelism > 1:
                groups = {g: data for g, data in groups.items() if g in owned}
            meta = operator.rescale_meta(metas, me, parallelism) if rescaled else metas[me]
            if not meta and not groups:
                continue  # this subtask had nothing (a sink that had not written yet)
            operator.restore_state(OperatorState(meta, groups), snapshot.max_parallelism)
            operator.restored(snapshot.checkpoint_id, self._increments.get(name, 0))
        self.restored_from = snapshot.checkpoint_id
        log.info("job %r restored from %s %d", snapshot.job, snapshot.kind,
                 snapshot.checkpoint_id)

    def _join_checkpoints(self) -> None:
        """Make every task a participant of the coordinator's checkpoints."""
        coordinator = self.coordinator
        assert coordinator is not None
        opts = self.options
        acknowledge = coordinator.acknowledge
        for task in self.plan.tasks:
            mailbox = self.mailboxes[id(task)]
            mailbox.in_use = True
            ops = [self.operators[n.id] for n in task.nodes if n.id in self.operators]
            for op in ops:
                op.open_checkpoints(acknowledge, opts.max_parallelism)
            reader = self.readers.get(task.head.id)
            names = [op.name for op in ops]
            gate = self.gates.get(id(task))
            if gate is not None and len(gate.channels) > 1:
                names.insert(0, _gate_name(task))
            start = None
            if reader is not None:
                names.insert(0, task.head.name)
                start = self._source_start(task, reader)
            participant = Participant(names, start, mailbox.post,
                                      self._final_states(task, reader, ops, names),
                                      self._notifier(reader, ops))
            self.participants[id(task)] = participant
            coordinator.participants.append(participant)

    def _source_start(self, task: TaskSpec, reader: SourceReader) -> Any:
        coordinator = self.coordinator
        assert coordinator is not None
        output = self._source_outputs[task.head.id]
        name = task.head.name

        async def start(checkpoint_id: int) -> None:
            coordinator.acknowledge(checkpoint_id, name,
                                    OperatorState(dumps(reader.position()), {}))
            await output.barrier(checkpoint_id)
        return start

    def _final_states(self, task: TaskSpec, reader: SourceReader | None, ops: list[Operator],
                      names: list[str]) -> Any:
        maxp = self.options.max_parallelism
        gate = self.gates.get(id(task))

        def final_states(checkpoint_id: int) -> dict[str, OperatorState | KeyedRows | None]:
            states: dict[str, OperatorState | KeyedRows | None] = {}
            if reader is not None:
                states[task.head.name] = OperatorState(dumps(reader.position()), {})
            if gate is not None and _gate_name(task) in names:
                states[_gate_name(task)] = OperatorState(dumps(gate.state()), {})
            for op in ops:
                states[op.name] = op.snapshot_state(checkpoint_id, maxp)
            return states
        return final_states

    @staticmethod
    def _notifier(reader: SourceReader | None, ops: list[Operator]) -> Any:
        async def notify(checkpoint_id: int) -> None:
            if reader is not None:
                await reader.notify_checkpoint_complete(checkpoint_id)
            for op in ops:
                await op.notify_checkpoint_complete(checkpoint_id)
        return notify

    def _finished(self, task: TaskSpec) -> None:
        coordinator = self.coordinator
        if coordinator is not None:
            coordinator.task_finished(self.participants[id(task)])

    async def _final_checkpoint(self, supervisor: _Supervisor) -> None:
        """Every task has ended: one last checkpoint, whose completion commits
        what the sinks still hold, so that a restart after the end replays nothing."""
        coordinator = self.coordinator
        assert coordinator is not None
        coordinator.pause()
        await coordinator.settled()
        await coordinator.trigger()
        await supervisor.wait([])

    async def _close_all(self) -> list[BaseException]:
        errors: list[BaseException] = []
        closables: list[SourceReader | Operator] = [*self.readers.values(),
                                                   *self.operators.values()]
        for closable in closables:
            try:
                await closable.close()
            except Exception as exc:  # keep closing the rest
                errors.append(exc)
        return errors


async def run_plan(plan: Plan, options: RuntimeOptions) -> JobResult:
    return await Job(plan, options).run()

