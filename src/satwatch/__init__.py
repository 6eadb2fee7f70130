"""satwatch: spacecraft-telemetry anomaly detection served by NVIDIA Triton.

Subpackages follow the path telemetry takes:

- ``satwatch.data``: SMAP/MSL telemetry and expert labels.
- ``satwatch.detectors``: OmniAnomaly and TranAD, thresholds, training.
- ``satwatch.export``: ONNX and TorchScript exports of trained detectors.
- ``satwatch.repository``: the Triton model repository (configs, build, validation).
- ``satwatch.server``: the embedded Triton server launcher and Python-based backends.
- ``satwatch.client``: streaming telemetry through a running server.
- ``satwatch.evaluation``: events and metrics against the expert labels.
"""

__version__ = "0.1.0"
