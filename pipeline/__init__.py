"""fleetcare pipeline: the backend, from MQTT messages to leads in a service centre's CRM.

One sub-package per concept, layered bottom to top (import-linter holds each to importing only
those below it): ``store`` (DuckDB, migrations, exports, the serving store), ``broker`` (URLs,
login, PKI, ACL, the one-machine broker), ``ingest`` (exactly-once landing), ``features``,
``ml`` (training, registry, scoring), ``crm`` (outbox, signed delivery, inbound updates),
``leads`` (advice, urgent faults, campaigns, appointments), ``privacy`` and ``ops``, then
``sandbox`` (stand-ins for demos and tests) and ``cli``. Below them all sit three modules:
``errors`` (the one error hierarchy), ``config`` (settings) and ``foreground``.
"""
