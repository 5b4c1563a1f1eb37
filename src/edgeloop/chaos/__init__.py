"""The chaos suite: seeded fault scenarios against real Mosquitto, PostgreSQL and processes.

``edgeloop chaos`` (``cli/chaos.py``) runs them; ``docs/chaos.md`` says what each proves
and how samples are accounted for.
"""
