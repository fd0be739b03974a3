"""The ``fleetcare`` command line: one entry point in front of every package.

``main`` parses the command line; each package adds its own sub-commands through the
``fleetcare.commands`` entry points, imported only when their sub-command runs.
"""

from flows.cli.main import main

__all__ = ["main"]
