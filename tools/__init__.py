"""Model conversion tools (need TensorFlow: pip install '.[tools]'); see tools/README.md."""
