from model_fixtures import tiny_model_dir, tiny_splits, tiny_training  # noqa: F401
