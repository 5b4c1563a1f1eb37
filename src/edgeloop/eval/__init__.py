"""Scorers for public anomaly benchmarks: NAB v1.1 (:mod:`.nab`) and SKAB (:mod:`.skab`)."""
