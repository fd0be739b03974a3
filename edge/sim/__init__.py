"""The fleet simulator: simulated vehicles and their hidden wear, simulated ECUs, and a whole
fleet of real agents on virtual buses, in as many processes as its size needs, and the
fleet's invented master data and workshop history as the CSV files a DMS exports, with the
VINs its buses answer; its regional weather and temperature outlook; and a fast daily path
that gives what the backend would land without running a frame (:func:`landed_days`).
A gateway never imports this package.
"""

from edge.sim.capacity import ShardPlan, plan_shards
from edge.sim.daily import LandedHistory, landed_days
from edge.sim.ecus import EcuBehaviour, SimulatedEcu
from edge.sim.faults import dtc_code_to_raw, dtc_raw_to_code
from edge.sim.fleet import FleetResult, run_fleet
from edge.sim.masterdata import (
    SimVehicle,
    vehicles_of,
    write_master_data,
    write_region_forecasts,
)
from edge.sim.readings import DayReadings
from edge.sim.shards import run_fleet_processes
from edge.sim.simulator import (
    SimDay,
    VehicleSimulator,
    VehicleSpec,
    load_reference_dbc,
    make_fleet,
    params_of,
)
from edge.sim.vins import simulated_vin, vin_exchange
from edge.sim.wear import HealthModel, WorkshopOrder
from edge.sim.weather import daily_min_c, forecast_min_c, regional_anomaly_c
from edge.sim.workshop import vehicle_orders, write_repair_orders

__all__ = [
    "DayReadings",
    "EcuBehaviour",
    "FleetResult",
    "HealthModel",
    "LandedHistory",
    "ShardPlan",
    "SimDay",
    "SimVehicle",
    "SimulatedEcu",
    "VehicleSimulator",
    "VehicleSpec",
    "WorkshopOrder",
    "daily_min_c",
    "dtc_code_to_raw",
    "dtc_raw_to_code",
    "forecast_min_c",
    "landed_days",
    "load_reference_dbc",
    "make_fleet",
    "params_of",
    "plan_shards",
    "regional_anomaly_c",
    "run_fleet",
    "run_fleet_processes",
    "simulated_vin",
    "vehicle_orders",
    "vehicles_of",
    "vin_exchange",
    "write_master_data",
    "write_region_forecasts",
    "write_repair_orders",
]
