"""Where models run and latency is measured. Never imports TensorFlow:
running a .tflite needs only LiteRT."""
