"""fleetcare edge: the in-vehicle agent (CAN/OBD-II reading, decoding, spool, MQTT) and simulator.

This package imports nothing else of fleetcare's, so a gateway can install it alone. The
backend may import exactly one part of it, ``edge.wire`` (the MQTT contract and the helpers
both sides must share). ``edge.diag`` reads on-board diagnostics, ``edge.sim`` simulates
vehicles and whole fleets (a gateway never imports it); the agent's own modules (``agent``,
``spool``, ``publish``, ``decode``, ``rules``, ``source``, ``runtime`` ...) sit at the top level.
"""
