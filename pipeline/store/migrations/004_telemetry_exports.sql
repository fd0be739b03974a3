-- telemetry exports: cold telemetry moved to Parquet, one row per export
CREATE TABLE telemetry_exports (
    export_id    VARCHAR PRIMARY KEY,
    cutoff       TIMESTAMPTZ NOT NULL,
    n_rows       BIGINT NOT NULL,
    exported_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
