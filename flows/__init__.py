"""fleetcare flows: Prefect flows (thin shells over pipeline and models) and the CLI.

``flows.scheduled`` holds what a deployment serves; ``flows.demo`` runs the whole pipeline on
one machine with the sandbox's stand-ins; ``flows.cli`` is the ``fleetcare`` command.
"""
