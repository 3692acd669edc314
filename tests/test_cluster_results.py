"""What collect() gathered in a worker, on its way back: as columns for window
results, as it is for anything else, and refused when it is neither.

The round trip over random values is in property_tests/test_codec.py.
"""

from __future__ import annotations

import pickle

import pytest

from streamlet.cluster.codec import CodecError
from streamlet.cluster.results import pack_collected, unpack_collected
from streamlet.windows import TimeWindow, WindowResult


def test_collected_window_results_travel_as_columns_and_come_back_as_results() -> None:
    window = TimeWindow(0, 1000)
    results = [WindowResult("ann", window, (2, 7.5)), WindowResult(("bob", 1), window, None)]
    packed = pack_collected(results)
    assert packed == ("windows", ["ann", ("bob", 1)], [window, window], [(2, 7.5), None])
    back = unpack_collected(pickle.loads(pickle.dumps(packed)))
    assert back == results and all(type(r) is WindowResult for r in back)
    assert type(back[0].window) is TimeWindow and back[0].window is back[1].window
    assert back[1].key == ("bob", 1) and back[0].value == (2, 7.5)


@pytest.mark.parametrize("values", [[], [1, "x"], [WindowResult(1, TimeWindow(0, 5), 2), 3],
                                    [(1, TimeWindow(0, 5), 2)]])
def test_other_collected_values_travel_as_they_are(values: list[object]) -> None:
    packed = pack_collected(values)
    assert packed == ("values", values)
    back = unpack_collected(packed)
    assert back == values and [type(v) for v in back] == [type(v) for v in values]


@pytest.mark.parametrize("packed", [("windows", [1], [], [2]), ("values", (1, 2)), "values",
                                    ("columns", [1], [2], [3]), None])
def test_collected_values_of_another_shape_are_refused(packed: object) -> None:
    with pytest.raises(CodecError, match="collected values from a worker are not what "
                                         "pack_collected makes"):
        unpack_collected(packed)
