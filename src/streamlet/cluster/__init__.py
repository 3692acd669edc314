"""Running one job over several worker processes (``Pipeline(workers=N)``).

``codec`` turns batches and control elements into bytes and back; ``frames``
carries those bytes over an authenticated, flow-controlled Unix socket;
``control`` is the small messages between the coordinator and its workers;
``shuffle`` is a ``key_by`` edge between workers; ``worker`` is a worker
process's side (its part of the job, as ``core.runtime.Job`` with an
``Exchange``); ``workers`` starts and supervises the worker processes; and
``coordinator`` runs a job over them: checkpoints, the final checkpoint,
results (what ``collect()`` gathered comes back through ``results``), and
what the restart strategy acts on. docs/scaling.md tells it
from the user's side.
"""
