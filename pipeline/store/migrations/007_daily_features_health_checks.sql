-- daily features materialised by the flows (long form); health-check history
CREATE TABLE daily_features (
    vehicle_id  VARCHAR NOT NULL,
    day         DATE NOT NULL,
    feature     VARCHAR NOT NULL,
    value       DOUBLE NOT NULL,
    PRIMARY KEY (vehicle_id, day, feature)
);
CREATE TABLE health_checks (
    checked_at  TIMESTAMPTZ NOT NULL,
    check_name  VARCHAR NOT NULL,
    value       DOUBLE,
    threshold   DOUBLE NOT NULL,
    healthy     BOOLEAN NOT NULL,
    message     VARCHAR NOT NULL,
    detail      JSON,
    PRIMARY KEY (checked_at, check_name)
);
