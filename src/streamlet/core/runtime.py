"""Run a plan: one asyncio task per task of the plan, joined by channels.

The job ends when every task has seen the end of all its inputs. The first
failure anywhere (a task, or a background task an operator spawned) cancels
everything else and is raised from ``run``; cancelling ``run`` cancels every
task. Either way every operator and reader is closed before ``run`` returns.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamlet.errors import StreamletError
from streamlet.time.clock import Clock, SystemClock

from .batch import Batch
from .channels import Channel, ChannelOutput, ChannelStatistics, InputGate
from .control import MAX_WATERMARK, Watermark, WatermarkStatus
from .graph import Node
from .mailbox import MAIL, Mailbox
from .operator import Chained, Operator, OperatorContext, Output, fan_out
from .plan import Plan, TaskSpec, is_chained
from .source import SourceReader


@dataclass(frozen=True)
class RuntimeOptions:
    batch_size: int = 1024
    channel_capacity: int = 8
    max_parallelism: int = 128
    scheduling_seed: int = 0
    clock: Clock = field(default_factory=SystemClock)


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports: the statistics of every channel, and the
    counters of operators that keep some (a window's ``dropped_late``)."""

    channels: dict[str, ChannelStatistics]
    operators: dict[str, dict[str, int]] = field(default_factory=dict)


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

    async def cancel_all(self) -> None:
        pending = [t for t in self.tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class Job:
    """One run of a plan."""

    def __init__(self, plan: Plan, options: RuntimeOptions) -> None:
        self.plan = plan
        self.options = options
        self.operators: dict[int, Operator] = {}
        self.readers: dict[int, SourceReader] = {}
        self.channels: dict[tuple[int, int], Channel] = {}  # (consumer node, input index)
        self._source_outputs: dict[int, Output] = {}
        self.mailboxes: dict[int, Mailbox] = {id(t): Mailbox() for t in plan.tasks}

    # -- building ----------------------------------------------------------------

    def _build(self, spawn: Any) -> None:
        graph = self.plan.graph
        opts = self.options
        for node in graph.nodes:
            if node.kind == "source":
                assert node.make_source is not None
                self.readers[node.id] = node.make_source()
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
                op.open(OperatorContext(spawn, opts.max_parallelism, opts.clock, mailbox))
            else:
                self._source_outputs[node.id] = fan_out(main)

    def _output_to(self, consumer: Node, inp: Any) -> Output:
        if is_chained(consumer):
            return Chained(self.operators[consumer.id])
        index = consumer.inputs.index(inp)
        return ChannelOutput(self.channels[(consumer.id, index)], self.options.batch_size)

    # -- running -----------------------------------------------------------------

    async def _run_source(self, task: TaskSpec, output: Output) -> None:
        reader = self.readers[task.head.id]
        mailbox = self.mailboxes[id(task)]
        sleep = asyncio.sleep
        reading: asyncio.Task[Batch | Watermark | None] | None = None
        try:
            while True:
                if not mailbox.in_use:  # the common case: nothing else to wait for
                    batch = await reader.next_batch()
                else:
                    await mailbox.run_all()
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
                elif batch.values:
                    await output.push(batch)
                await sleep(0)  # let other tasks take a turn between batches
        finally:
            if reading is not None and not reading.done():
                reading.cancel()
        # A bounded input has ended: all event time has passed.
        await output.watermark(MAX_WATERMARK)
        await mailbox.run_all()
        await output.end()

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
            elif item is MAIL:
                await mailbox.run_all()
            else:
                break
            await sleep(0)
        await mailbox.run_all()
        await head.end_input()

    async def run(self) -> JobResult:
        supervisor = _Supervisor()
        rng = random.Random(self.options.scheduling_seed)
        try:
            self._build(supervisor.spawn)
            main = []
            for task in self.plan.tasks:
                if task.is_source:
                    coro = self._run_source(task, self._source_outputs[task.head.id])
                else:
                    gate = InputGate([self.channels[(task.head.id, i)]
                                      for i in range(len(task.head.inputs))], rng,
                                     self.mailboxes[id(task)])
                    coro = self._run_gate(task, gate)
                main.append(supervisor.spawn(coro, f"task {task.name}"))
            await supervisor.wait(main)
        finally:
            await supervisor.cancel_all()
            close_errors = await self._close_all()
        if close_errors:  # only when nothing worse is already on its way out
            raise StreamletError(
                f"{len(close_errors)} operator(s) failed to close: {close_errors[0]!r}"
            ) from close_errors[0]
        return JobResult({c.name: c.statistics() for c in self.channels.values()},
                         {op.name: op.statistics() for op in self.operators.values()
                          if op.statistics()})

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

