-- held leads: a lead that may not be sent (no customer on record, no consent to contact) keeps state 'held' and says why
ALTER TABLE leads ADD COLUMN hold_reason VARCHAR;
