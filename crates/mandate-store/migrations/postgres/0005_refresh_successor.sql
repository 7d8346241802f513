-- Refresh-token retries return the one successor instead of re-issuing: a rotated token's row
-- keeps its successor sealed under a key derived from the rotated token itself (base64url of
-- nonce || AES-256-GCM ciphertext), cleared once the successor is used or the grace window has
-- passed. The retry counter of the re-issuing scheme goes.
-- Kept in lockstep with migrations/sqlite/0005_refresh_successor.sql.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
ALTER TABLE refresh_tokens DROP COLUMN grace_reissues;
