-- dead letters record their payload's size and sha256 (an oversize one keeps only its head)
-- An oversize payload is now kept as its first 64 KiB: payload_bytes and payload_sha256
-- describe the whole payload as it was published, so a letter whose payload is shorter than
-- payload_bytes is known to be incomplete (and cannot be replayed). Older rows kept their
-- payload whole: their size and hash are computed from it.
ALTER TABLE dead_letters ADD COLUMN payload_bytes BIGINT;
ALTER TABLE dead_letters ADD COLUMN payload_sha256 VARCHAR;
UPDATE dead_letters SET payload_bytes = octet_length(payload), payload_sha256 = sha256(payload);
