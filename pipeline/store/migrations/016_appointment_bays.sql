-- the bay each proposed appointment holds: one row per (centre, local day, bay) a lead's proposal took
-- centre_capacity.free_slots counts the free bays; this table says which of the centre's
-- bays (1..service_centres.bays) each fleetcare proposal holds, so two proposals on one day
-- never name the same bay. A superseded proposal deletes its row with the slot it gives back.
CREATE TABLE appointment_bays (
    centre_id  VARCHAR NOT NULL,
    day        DATE NOT NULL,
    bay        INTEGER NOT NULL,
    lead_id    VARCHAR NOT NULL,
    PRIMARY KEY (centre_id, day, bay)
);
