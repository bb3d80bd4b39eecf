"""Learning: time splits, training, metrics, thresholds and registry access."""
