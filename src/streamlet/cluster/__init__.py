"""Running one job over several processes.

``codec`` turns batches and control elements into bytes and back; ``frames``
carries those bytes over an authenticated, flow-controlled Unix socket;
``control`` is the small messages between the coordinator and its workers
(deploy, start, heartbeat, checkpoint trigger and acknowledgement, cancel,
failure); ``workers`` starts worker processes that rebuild the pipeline from
its import path, and supervises them. The runtime does not use this layer
yet (issue 7 builds on it).
"""
