-- Refresh-token retries return the one successor instead of re-issuing: a rotated token's row
-- keeps its successor sealed under a key derived from the rotated token itself (base64url of
-- nonce || AES-256-GCM ciphertext), cleared once the successor is used or the grace window has
-- passed. The retry counter of the re-issuing scheme (grace_reissues) is no longer read or written;
-- it stays, so that instances of the previous release keep working during a rolling upgrade
-- (docs/DEPLOYMENT.md: migrations only add), and will be dropped by a later release.
-- Kept in lockstep with migrations/postgres/0005_refresh_successor.sql.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed TEXT;
