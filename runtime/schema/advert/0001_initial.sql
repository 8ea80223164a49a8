-- advert: tokens that partners present to the API to publish adverts, and every use of them.
--
-- A token is random, shown once at issue, and stored only as a hash (hex SHA-256 or HMAC):
-- the API hashes what it is given and looks the hash up. token_prefix (the first characters of
-- the token) lets an operator recognise a token in the admin without being able to use it.

CREATE TABLE tokens (
    id {{id}},
    token_hash {{text}} NOT NULL UNIQUE
        CONSTRAINT tokens_hash_check CHECK (length(token_hash) >= 32),
    token_prefix {{text}} NULL,
    issued_to {{text}} NOT NULL,
    issued_by {{text}} NULL,
    scope {{text}} NOT NULL,
    note {{text}} NULL,
    metadata {{json}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    expires_at {{timestamptz}} NULL,
    revoked_at {{timestamptz}} NULL,
    revoked_reason {{text}} NULL,
    max_uses INTEGER NULL CONSTRAINT tokens_max_uses_check CHECK (max_uses IS NULL OR max_uses > 0),
    -- incremented with `WHERE max_uses IS NULL OR use_count < max_uses`; the CHECK is the backstop
    use_count INTEGER NOT NULL DEFAULT 0
        CONSTRAINT tokens_use_count_check
        CHECK (use_count >= 0 AND (max_uses IS NULL OR use_count <= max_uses)),
    last_used_at {{timestamptz}} NULL
);
CREATE INDEX IF NOT EXISTS tokens_issued_to_idx ON tokens (issued_to);

CREATE TABLE token_uses (
    id {{id}},
    token_id BIGINT NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    used_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    used_by {{text}} NULL,
    ip {{text}} NULL,
    user_agent {{text}} NULL,
    details {{json}} NULL
);
CREATE INDEX IF NOT EXISTS token_uses_token_idx ON token_uses (token_id, used_at);
