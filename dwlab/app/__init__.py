"""The application: backend factory, data, models, training, checkpoints, CLI."""
