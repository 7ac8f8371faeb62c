"""Classifier: text cleaning, training data, the Pipeline, abstention decisions, evaluation, the
model registry and retraining."""
