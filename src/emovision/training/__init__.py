"""Training: options, the model registry, batches and folds, the trainer, checkpoints,
calibration, metrics and cross-validation. Imports the data package and nothing above it."""
