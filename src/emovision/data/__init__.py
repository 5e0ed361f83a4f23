"""Data: audio reading, corpus readers, features, the features file, waveform augmentation,
speech detection and speaker statistics. Imports nothing above it."""
