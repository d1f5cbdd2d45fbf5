"""The local stand-in for SageMaker managed MLflow (and STS), and the demo that uses it."""
