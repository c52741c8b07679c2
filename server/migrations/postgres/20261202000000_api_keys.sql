-- API keys. The secret is never stored: only the SHA-256 of its random part,
-- which is high-entropy, so a plain hash is enough. Namespace `*` is the
-- namespace of keys that manage every namespace.
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    role TEXT NOT NULL,
    label TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
