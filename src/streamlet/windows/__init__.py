"""Windows: assigners, triggers, evictors and the window operator, built on
keyed state and timers. ``sl.windows.Tumbling(...)`` and friends."""

from .assigners import Count as Count
from .assigners import Global as Global
from .assigners import GlobalWindow as GlobalWindow
from .assigners import Session as Session
from .assigners import Sliding as Sliding
from .assigners import TimeWindow as TimeWindow
from .assigners import Tumbling as Tumbling
from .assigners import WindowAssigner as WindowAssigner
from .evictors import CountEvictor as CountEvictor
from .evictors import Evictor as Evictor
from .evictors import TimeEvictor as TimeEvictor
from .operator import WindowResult as WindowResult
from .triggers import ContinuousEventTimeTrigger as ContinuousEventTimeTrigger
from .triggers import ContinuousProcessingTimeTrigger as ContinuousProcessingTimeTrigger
from .triggers import CountTrigger as CountTrigger
from .triggers import EventTimeTrigger as EventTimeTrigger
from .triggers import NeverTrigger as NeverTrigger
from .triggers import ProcessingTimeTrigger as ProcessingTimeTrigger
from .triggers import PurgingTrigger as PurgingTrigger
from .triggers import Trigger as Trigger
from .triggers import TriggerContext as TriggerContext
from .triggers import TriggerResult as TriggerResult

__all__ = [
    "ContinuousEventTimeTrigger", "ContinuousProcessingTimeTrigger", "Count", "CountEvictor",
    "CountTrigger", "EventTimeTrigger", "Evictor", "Global", "GlobalWindow", "NeverTrigger",
    "ProcessingTimeTrigger", "PurgingTrigger", "Session", "Sliding", "TimeEvictor",
    "TimeWindow", "Trigger", "TriggerContext", "TriggerResult", "Tumbling", "WindowAssigner",
    "WindowResult",
]
