"""Suite-wide settings."""

from hypothesis import HealthCheck, settings

# CI and developer machines here are small and shared: generation speed and example
# duration vary with load, which says nothing about the code under test.
settings.register_profile(
    "edgeloop",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("edgeloop")
