"""Evaluation: reports, ensembles, late fusion, robustness and cross-corpus scoring of trained
models. Imports data, training and inference."""
