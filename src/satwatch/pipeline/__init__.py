"""Pure array stages of the served pipeline, shared by the Python models and offline code.

- :mod:`~satwatch.pipeline.preprocess`: raw telemetry -> normalised steps (NaN/Inf refused).
- :mod:`~satwatch.pipeline.postprocess`: scores -> fused score, decisions, events (streamable).
- :mod:`~satwatch.pipeline.catalog`: the SQLite channel catalog ``custom_logic`` reads.
- :mod:`~satwatch.pipeline.eventlog`: the SQLite event log and webhook delivery.
- :mod:`~satwatch.pipeline.configs`: the parameters ``custom_logic`` reads and its file locations.
- :mod:`~satwatch.pipeline.serving`: helpers of the Python models' ``model.py``.
"""
