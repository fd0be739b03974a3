-- daily_features without its primary key, and the inputs each materialised day was computed from
-- At a million vehicles one materialised day is about 45 million rows, and the key's index
-- cost three times the insert and grew the process by hundreds of MB. Uniqueness of
-- (vehicle_id, day, feature) is kept by the one writer, which replaces a day range in a
-- single transaction (pipeline.features.materialised.write_daily_features).
-- daily_feature_inputs: one row per materialised day, a digest of every input that day's
-- features read (telemetry and fault codes of the day and the 62 before it, repair orders,
-- region forecasts, the vehicle register). Scoring reads a day's materialised rows only while
-- the store still gives the same digest; any landed, late or erased row changes it.
CREATE TABLE daily_features_unkeyed (
    vehicle_id  VARCHAR NOT NULL,
    day         DATE NOT NULL,
    feature     VARCHAR NOT NULL,
    value       DOUBLE NOT NULL
);
INSERT INTO daily_features_unkeyed
    SELECT vehicle_id, day, feature, value FROM daily_features ORDER BY day, vehicle_id, feature;
DROP TABLE daily_features;
ALTER TABLE daily_features_unkeyed RENAME TO daily_features;
CREATE TABLE daily_feature_inputs (
    day              DATE PRIMARY KEY,
    inputs           VARCHAR NOT NULL,
    materialised_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
