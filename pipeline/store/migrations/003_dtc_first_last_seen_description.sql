-- fault codes: first and last seen, description; agent health reports
ALTER TABLE dtc_events ADD COLUMN first_seen TIMESTAMPTZ;
ALTER TABLE dtc_events ADD COLUMN last_seen TIMESTAMPTZ;
ALTER TABLE dtc_events ADD COLUMN description VARCHAR NOT NULL DEFAULT '';
CREATE TABLE edge_health (
    vehicle_id  VARCHAR NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    online      BOOLEAN NOT NULL,
    counters    JSON NOT NULL,
    msg_id      VARCHAR NOT NULL
);
