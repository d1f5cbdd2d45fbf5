"""`python -m smoke` (`make smoke`): prove a deployed proxy works, with the MLflow client and a
token only. See smoke/__main__.py and docs/operations.md ("The smoke test")."""
