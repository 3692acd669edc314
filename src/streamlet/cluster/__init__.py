"""Running one job over several processes: how batches travel between them.

``codec`` turns batches and control elements into bytes and back; ``frames``
carries those bytes over an authenticated, flow-controlled Unix socket. The
runtime does not use this layer yet (issue 7 builds on it).
"""
