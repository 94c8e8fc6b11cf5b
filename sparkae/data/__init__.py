"""The Spark -> Torch data path; ``clear_cache()`` removes materialized training data."""

from sparkae.data.cache import clear_cache

__all__ = ["clear_cache"]
