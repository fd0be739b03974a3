-- customers, service centres, catalogue, models, scores, leads and outbox
CREATE TABLE customers (
    customer_id  VARCHAR PRIMARY KEY,
    name         VARCHAR NOT NULL,
    email        VARCHAR,
    phone        VARCHAR
);
CREATE TABLE service_centres (
    centre_id  VARCHAR PRIMARY KEY,
    name       VARCHAR NOT NULL,
    region     VARCHAR NOT NULL,
    bays       INTEGER NOT NULL
);
CREATE TABLE centre_capacity (
    centre_id   VARCHAR NOT NULL,
    day         DATE NOT NULL,
    free_slots  INTEGER NOT NULL,
    PRIMARY KEY (centre_id, day)
);
CREATE TABLE service_catalogue (
    component      VARCHAR PRIMARY KEY,
    work           VARCHAR NOT NULL,
    parts_eur      DOUBLE NOT NULL,
    labour_hours   DOUBLE NOT NULL,
    labour_rate_eur DOUBLE NOT NULL
);
CREATE TABLE model_registry (
    model_id    VARCHAR PRIMARY KEY,
    component   VARCHAR NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    features    VARCHAR[] NOT NULL,
    metrics     JSON NOT NULL,
    artifact    BLOB NOT NULL,
    promoted    BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE scores (
    vehicle_id    VARCHAR NOT NULL,
    component     VARCHAR NOT NULL,
    as_of         DATE NOT NULL,
    probability   DOUBLE NOT NULL,
    horizon_days  INTEGER NOT NULL,
    model_id      VARCHAR NOT NULL,
    PRIMARY KEY (vehicle_id, component, as_of)
);
CREATE TABLE leads (
    lead_id       VARCHAR PRIMARY KEY,
    vehicle_id    VARCHAR NOT NULL,
    component     VARCHAR NOT NULL,
    state         VARCHAR NOT NULL,
    severity      VARCHAR NOT NULL,
    probability   DOUBLE NOT NULL,
    horizon_days  INTEGER NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    document      JSON NOT NULL
);
CREATE TABLE outbox (
    event_id         VARCHAR PRIMARY KEY,
    lead_id          VARCHAR NOT NULL,
    body             JSON NOT NULL,
    status           VARCHAR NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    last_error       VARCHAR
);
