"""BlazePose: geometry, training data, the detector -> ROI -> landmarks pipeline."""
