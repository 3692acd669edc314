"""The engine: batches, keys, graph, plan, runtime and primitive operators."""
