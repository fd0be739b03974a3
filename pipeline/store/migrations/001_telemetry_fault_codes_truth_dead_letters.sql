-- telemetry, fault codes, ground truth, dead letters
CREATE TABLE ingested_messages (
    msg_id      VARCHAR PRIMARY KEY,
    vehicle_id  VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    topic       VARCHAR NOT NULL,
    n_rows      INTEGER NOT NULL,
    landed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE telemetry (
    vehicle_id  VARCHAR NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    signal      VARCHAR NOT NULL,
    value       DOUBLE NOT NULL,
    msg_id      VARCHAR NOT NULL
);
CREATE TABLE dtc_events (
    vehicle_id  VARCHAR NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    code        VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    ecu         VARCHAR NOT NULL,
    source      VARCHAR NOT NULL,
    cleared     BOOLEAN NOT NULL,
    msg_id      VARCHAR NOT NULL
);
CREATE TABLE ground_truth (
    vehicle_id     VARCHAR NOT NULL,
    component      VARCHAR NOT NULL,
    failure_ts     TIMESTAMPTZ,
    health_at_end  DOUBLE NOT NULL,
    sim_start_ts   TIMESTAMPTZ NOT NULL,
    sim_end_ts     TIMESTAMPTZ NOT NULL,
    msg_id         VARCHAR NOT NULL,
    PRIMARY KEY (vehicle_id, component)
);
CREATE TABLE vehicles (
    vehicle_id   VARCHAR PRIMARY KEY,
    model        VARCHAR NOT NULL,
    region       VARCHAR NOT NULL,
    customer_id  VARCHAR,
    centre_id    VARCHAR
);
CREATE SEQUENCE dead_letter_id;
CREATE TABLE dead_letters (
    id           BIGINT PRIMARY KEY DEFAULT nextval('dead_letter_id'),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    topic        VARCHAR NOT NULL,
    reason       VARCHAR NOT NULL,
    payload      BLOB NOT NULL,
    replayed_at  TIMESTAMPTZ
);
