-- the bay and hours each proposed appointment holds: one row per proposal, by centre, local day, bay and start
-- centre_capacity.free_slots counts the bookable slots; this table says which of the centre's
-- bays (1..service_centres.bays) and which hours of its day each fleetcare proposal holds, so
-- two proposals never share a bay at the same time. A superseded proposal deletes its row
-- with the slot it gives back.
CREATE TABLE appointment_bays (
    centre_id  VARCHAR NOT NULL,
    day        DATE NOT NULL,
    bay        INTEGER NOT NULL,
    starts_at  TIMESTAMPTZ NOT NULL,
    ends_at    TIMESTAMPTZ NOT NULL,
    lead_id    VARCHAR NOT NULL,
    PRIMARY KEY (centre_id, day, bay, starts_at)
);
