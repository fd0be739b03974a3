-- lead lifecycle and outcomes, follow-ups, visits, forecasts, campaigns, technician hours, retry window
ALTER TABLE centre_capacity ADD COLUMN technician_hours DOUBLE;
ALTER TABLE outbox ADD COLUMN first_failed_at TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN payload_format VARCHAR;
CREATE TABLE lead_events (
    update_id   VARCHAR PRIMARY KEY,
    lead_id     VARCHAR NOT NULL,
    from_state  VARCHAR,
    to_state    VARCHAR NOT NULL,
    event_at    TIMESTAMPTZ NOT NULL,
    source      VARCHAR NOT NULL,
    outcome     VARCHAR NOT NULL,
    detail      JSON,
    applied_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE lead_outcomes (
    lead_id       VARCHAR PRIMARY KEY,
    vehicle_id    VARCHAR NOT NULL,
    component     VARCHAR NOT NULL,
    outcome       VARCHAR NOT NULL,
    outcome_at    TIMESTAMPTZ NOT NULL,
    severity      VARCHAR NOT NULL,
    probability   DOUBLE,
    model_id      VARCHAR,
    reason        VARCHAR
);
CREATE TABLE follow_ups (
    lead_id     VARCHAR PRIMARY KEY,
    vehicle_id  VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    sent_at     TIMESTAMPTZ
);
CREATE TABLE service_visits (
    vehicle_id  VARCHAR NOT NULL,
    visit_at    TIMESTAMPTZ NOT NULL,
    centre_id   VARCHAR,
    lead_id     VARCHAR,
    PRIMARY KEY (vehicle_id, visit_at)
);
CREATE TABLE region_forecasts (
    region      VARCHAR NOT NULL,
    day         DATE NOT NULL,
    min_temp_c  DOUBLE NOT NULL,
    PRIMARY KEY (region, day)
);
CREATE TABLE campaign_contacts (
    campaign      VARCHAR NOT NULL,
    vehicle_id    VARCHAR NOT NULL,
    contacted_at  TIMESTAMPTZ NOT NULL,
    lead_id       VARCHAR NOT NULL,
    event_id      VARCHAR NOT NULL,
    PRIMARY KEY (campaign, vehicle_id, contacted_at)
);
