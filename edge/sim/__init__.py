"""The fleet simulator: simulated vehicles and their hidden wear, simulated ECUs, and a whole
fleet of real agents on virtual buses. A gateway never imports this package.
"""

from edge.sim.ecus import EcuBehaviour, SimulatedEcu
from edge.sim.fleet import run_fleet
from edge.sim.simulator import (
    VehicleSimulator,
    VehicleSpec,
    dtc_code_to_raw,
    dtc_raw_to_code,
    load_reference_dbc,
    make_fleet,
    params_of,
)
from edge.sim.wear import HealthModel

__all__ = [
    "EcuBehaviour",
    "HealthModel",
    "SimulatedEcu",
    "VehicleSimulator",
    "VehicleSpec",
    "dtc_code_to_raw",
    "dtc_raw_to_code",
    "load_reference_dbc",
    "make_fleet",
    "params_of",
    "run_fleet",
]
