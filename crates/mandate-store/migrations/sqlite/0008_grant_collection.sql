-- Collection of revoked grants (RL-13). Kept in lockstep with migrations/postgres/0008_grant_collection.sql.
-- A revoked grant is deleted once no authorization code or refresh token refers to it; this index
-- makes the check for codes a lookup rather than a scan.
CREATE INDEX authorization_codes_grant ON authorization_codes (grant_id);
