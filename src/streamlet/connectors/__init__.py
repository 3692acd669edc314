"""Sources and sinks built on the core's ``SourceReader`` and operator seams."""
