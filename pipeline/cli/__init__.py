"""The backend's sub-commands of ``fleetcare``; each registers itself through an entry point
and imports its package only when it runs.
"""


__all__: list[str] = []
