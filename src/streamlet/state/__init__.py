"""Keyed state: key groups, state descriptors, and the backends that hold state."""
