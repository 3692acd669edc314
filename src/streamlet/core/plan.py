"""Compile the logical graph into tasks joined by channels.

A node is *chained* to its input, and so runs in the same task, called
function to function, when it has exactly one input and that input is a
forward edge. Everything else starts a task of its own: sources, a
``union`` (several inputs) and the consumer behind a ``key_by`` (a hash
edge, which becomes a shuffle between worker processes). Fan-out stays in
the chain: one operator may feed several chained consumers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamlet.errors import StreamletConfigError

from .graph import DEAD_LETTER, Edge, Graph, Input, Node


@dataclass(eq=False)
class TaskSpec:
    """One asyncio task: a head and the nodes chained below it."""

    name: str
    head: Node
    nodes: list[Node] = field(default_factory=list)
    inputs: list[tuple[Node, Input]] = field(default_factory=list)  # channels into the head

    @property
    def is_source(self) -> bool:
        return self.head.kind == "source"


@dataclass
class Plan:
    graph: Graph
    tasks: list[TaskSpec]
    task_of: dict[int, TaskSpec]

    def describe(self) -> str:
        """A readable picture of the plan, for logs and the CLI."""
        lines = []
        for task in self.tasks:
            chain = " -> ".join(f"{n.kind}:{n.name}" for n in task.nodes)
            feeds = ", ".join(f"{p.name}[{i.edge.value}]" for p, i in task.inputs)
            lines.append(f"task {task.name}: {chain}" + (f"  <= {feeds}" if feeds else ""))
        return "\n".join(lines)


def is_chained(node: Node) -> bool:
    return (node.kind not in ("source", "union") and len(node.inputs) == 1
            and node.inputs[0].edge is Edge.FORWARD)



def _check(graph: Graph) -> None:
    if not any(n.kind == "source" for n in graph.nodes):
        raise StreamletConfigError("the pipeline has no source; add one with from_iterable(...)")
    consumers = graph.consumers()
    for node in graph.nodes:
        if node.on_error == "dead_letter" and not any(
                inp.tag == DEAD_LETTER for _, inp in consumers[node.id]):
            raise StreamletConfigError(
                f"operator {node.name!r} sends failed records to its dead-letter output, "
                "but nothing reads it, so they would be lost. Read them with "
                f"stream.dead_letters().sink(...), or drop on_error='dead_letter'.")


def compile_graph(graph: Graph) -> Plan:
    _check(graph)
    tasks: list[TaskSpec] = []
    task_of: dict[int, TaskSpec] = {}
    for node in graph.nodes:  # nodes are in creation order, so inputs come first
        if is_chained(node):
            task = task_of[node.inputs[0].node.id]
        else:
            task = TaskSpec(node.name, node)
            task.inputs = [(inp.node, inp) for inp in node.inputs]
            tasks.append(task)
        task.nodes.append(node)
        task_of[node.id] = task
    return Plan(graph, tasks, task_of)
