-- repair orders imported from the dealer system: the workshop history training labels come from
CREATE TABLE repair_orders (
    order_id        VARCHAR PRIMARY KEY,
    vehicle_id      VARCHAR NOT NULL,
    opened_at       TIMESTAMPTZ NOT NULL,
    odometer_km     DOUBLE,
    component       VARCHAR NOT NULL,
    operation_code  VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    lead_id         VARCHAR,
    imported_at     TIMESTAMPTZ NOT NULL
);
