"""Inference: the Recognizer and what it uses (model loading, speaker enrolment, fusion's linear
model, turns, explanations, embeddings, ONNX export). Imports data and training only."""
