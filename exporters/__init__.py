"""Exporters: TFLite (fp32, fp16, dynamic, int8), Edge TPU, ONNX, metadata,
and parity checks against the source model."""
