"""Pure array stages of the served pipeline, shared by the Python models and offline code.

- :mod:`~satwatch.pipeline.preprocess`: raw telemetry -> normalised steps (NaN/Inf refused).
- :mod:`~satwatch.pipeline.postprocess`: the postprocessing stage: scores -> fused score,
  decisions, events (streamable).
- :mod:`~satwatch.pipeline.fusion`: per-detector scores -> one score (max, mean, vote).
- :mod:`~satwatch.pipeline.dynamic_threshold`: Telemanom's dynamic threshold, one streaming
  engine and its state.
- :mod:`~satwatch.pipeline.event_finder`: runs of anomalous steps and the stage's events.
- :mod:`~satwatch.pipeline.poststate`: the stage's stream state and its ``post_state`` vector.
- :mod:`~satwatch.pipeline.calibration`: per-channel thresholds and training statistics,
  fitted at build time, and the pick for a request.
- :mod:`~satwatch.pipeline.metrics`: satwatch's own metrics on Triton's metrics port.
- :mod:`~satwatch.pipeline.calibration_file`: ``thresholds.json``, where they are shipped.
- :mod:`~satwatch.pipeline.catalog`: the SQLite channel catalog ``custom_logic`` reads.
- :mod:`~satwatch.pipeline.eventlog`: the SQLite event log and webhook delivery.
- :mod:`~satwatch.pipeline.configs`: the parameters ``custom_logic`` reads and its file locations.
- :mod:`~satwatch.pipeline.serving`: helpers of the Python models' ``model.py``.
"""
