"""The logical graph: what the user asked for, one node per API call.

A node knows how to build its runtime operator and how its inputs reach it.
It knows nothing about tasks or channels; the planner decides those.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamlet.errors import StreamletConfigError

if TYPE_CHECKING:
    from .operator import Operator
    from .source import SourceReader


class Edge(enum.Enum):
    """How records travel from a producer node to a consumer node."""

    FORWARD = "forward"  # same task when possible: chained, function to function
    HASH = "hash"  # by key group: the edge behind a key_by


DEAD_LETTER = "dead_letter"
"""The side output that receives records a user function failed on, when the
operator was given ``on_error="dead_letter"``."""


@dataclass(eq=False)
class Input:
    node: Node
    edge: Edge = Edge.FORWARD
    tag: str | None = None  # a side output of ``node`` rather than its main output


@dataclass(eq=False)
class Node:
    id: int
    kind: str
    name: str
    inputs: list[Input]
    make_operator: Callable[[], Operator] | None = None
    make_source: Callable[[], SourceReader] | None = None
    on_error: str = "fail"
    function: Any = None  # the user's function object, where it carries state
    collected: Any = None  # the list a collect() sink fills (a parallel job fills it at the end)

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.kind}, {self.name!r})"


class Graph:
    """Nodes in the order they were added; names are unique."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    def unique_name(self, wanted: str | None, default: str) -> str:
        if wanted is not None:
            if wanted in self._names:
                raise StreamletConfigError(
                    f"operator name {wanted!r} is used twice in this pipeline; "
                    "names identify operator state, so give each operator its own")
            return wanted
        name = default
        n = 2
        while name in self._names:
            name = f"{default}-{n}"
            n += 1
        return name

    def add(self, kind: str, name: str, inputs: list[Input], **kwargs: Any) -> Node:
        if name in self._names:
            raise StreamletConfigError(f"operator name {name!r} is used twice in this pipeline")
        node = Node(len(self.nodes), kind, name, inputs, **kwargs)
        self._names.add(name)
        self.nodes.append(node)
        return node

    def consumers(self) -> dict[int, list[tuple[Node, Input]]]:
        """For each node id, the nodes reading from it and through which input."""
        out: dict[int, list[tuple[Node, Input]]] = {n.id: [] for n in self.nodes}
        for node in self.nodes:
            for inp in node.inputs:
                out[inp.node.id].append((node, inp))
        return out
