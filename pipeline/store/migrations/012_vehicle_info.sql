-- vehicle info: the VIN each agent read from the bus, its version, its DBC and rules fingerprints
-- One row per vehicle and distinct report (VIN, how it was read, agent version,
-- fingerprints): a repeat of the same report (an agent's every start) moves last_seen and
-- counts it; a change (a VIN first read, another VIN, a new DBC) adds a row, so the history
-- of what was plugged where stays.
CREATE TABLE vehicle_info (
    vehicle_id         VARCHAR NOT NULL,
    vin                VARCHAR,
    vin_source         VARCHAR NOT NULL,
    agent_version      VARCHAR NOT NULL,
    dbc_fingerprints   JSON NOT NULL,
    rules_fingerprint  VARCHAR NOT NULL,
    first_seen         TIMESTAMPTZ NOT NULL,
    last_seen          TIMESTAMPTZ NOT NULL,
    reports            INTEGER NOT NULL,
    msg_id             VARCHAR NOT NULL
);
