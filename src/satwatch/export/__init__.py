"""Exported forms of the trained detectors: ONNX (OmniAnomaly) and TorchScript (TranAD)."""
