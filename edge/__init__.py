"""fleetcare edge: the in-vehicle agent (CAN/OBD-II reading, decoding, spool, MQTT) and simulator.

This package imports nothing else of fleetcare's, so a gateway can install it alone.
"""
