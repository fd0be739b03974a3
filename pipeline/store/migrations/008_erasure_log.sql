-- erasure log: what `fleetcare forget` removed, recorded without the personal data itself
CREATE TABLE erasure_log (
    erasure_id       VARCHAR PRIMARY KEY,
    erased_at        TIMESTAMPTZ NOT NULL,
    vehicle_id       VARCHAR NOT NULL,
    unlinked         VARCHAR[] NOT NULL,
    customer_hashes  VARCHAR[] NOT NULL,
    scope            VARCHAR NOT NULL,
    counts           JSON NOT NULL
);
