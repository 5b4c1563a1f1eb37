"""edgeloop: sense, learn and respond across tiers."""

__version__ = "0.1.0"
__all__ = ["__version__"]
