-- nmarket: listings parsed from the nmarket channel — complexes, flats, price history, and every
-- post the parser read (parsed or not, so unparseable posts are kept and counted).
-- Shares PostgreSQL schema `bot`: every name carries the nmarket_ prefix. tradeagent/0001 is this
-- file with the prefix tradeagent_ (a unit test keeps the two identical).
--
-- Units: price in minor units (kopecks), area in dm² (35.5 m² = 3550), commission in basis points
-- (2.5% = 250): integers behave the same on both backends, floats and decimals do not.

-- One row per channel post read by the parser; the source of every flat and price.
CREATE TABLE nmarket_posts (
    id {{id}},
    chat_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    message_date {{timestamptz}} NOT NULL,
    text {{text}} NULL,
    status {{text}} NOT NULL
        CONSTRAINT nmarket_posts_status_check CHECK (status IN ('parsed', 'unparsed')),
    flats_found INTEGER NOT NULL DEFAULT 0,
    -- why it was not parsed: no_complex, no_price, no_flat, empty, …
    error {{text}} NULL,
    parser_version INTEGER NOT NULL DEFAULT 1,
    parsed_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (chat_id, message_id),
    CONSTRAINT nmarket_posts_unparsed_check CHECK (status <> 'unparsed' OR error IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS nmarket_posts_unparsed_idx
    ON nmarket_posts (message_date) WHERE status = 'unparsed';

CREATE TABLE nmarket_complexes (
    id {{id}},
    name {{text}} NOT NULL,
    -- lower case, quotes and "ЖК" dropped, spaces collapsed: the identity of a complex
    normalized_name {{text}} NOT NULL UNIQUE,
    district {{text}} NULL,
    developer {{text}} NULL,
    address {{text}} NULL,
    first_seen_at {{timestamptz}} NOT NULL,
    last_seen_at {{timestamptz}} NOT NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);

CREATE TABLE nmarket_flats (
    id {{id}},
    complex_id BIGINT NOT NULL REFERENCES nmarket_complexes (id) ON DELETE CASCADE,
    -- the parser's stable key for the flat within its complex (lot number when the post has one,
    -- else building|rooms|area|floor): reposts and edits update one row and extend its history
    external_key {{text}} NOT NULL,
    building {{text}} NULL,
    rooms INTEGER NULL CONSTRAINT nmarket_flats_rooms_check CHECK (rooms IS NULL OR rooms >= 0),
    area_dm2 INTEGER NULL CONSTRAINT nmarket_flats_area_check CHECK (area_dm2 IS NULL OR area_dm2 > 0),
    floor INTEGER NULL,
    floors_total INTEGER NULL,
    price_minor BIGINT NULL
        CONSTRAINT nmarket_flats_price_check CHECK (price_minor IS NULL OR price_minor > 0),
    currency {{text}} NOT NULL DEFAULT 'RUB',
    commission_text {{text}} NULL,
    commission_bp INTEGER NULL
        CONSTRAINT nmarket_flats_commission_check
        CHECK (commission_bp IS NULL OR commission_bp BETWEEN 0 AND 10000),
    -- a commission stated as a sum rather than a percent
    commission_minor BIGINT NULL
        CONSTRAINT nmarket_flats_commission_minor_check
        CHECK (commission_minor IS NULL OR commission_minor >= 0),
    completion {{text}} NULL,
    first_post_id BIGINT NULL REFERENCES nmarket_posts (id) ON DELETE SET NULL,
    last_post_id BIGINT NULL REFERENCES nmarket_posts (id) ON DELETE SET NULL,
    first_seen_at {{timestamptz}} NOT NULL,
    last_seen_at {{timestamptz}} NOT NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (complex_id, external_key)
);
CREATE INDEX IF NOT EXISTS nmarket_flats_last_seen_idx ON nmarket_flats (last_seen_at);
CREATE INDEX IF NOT EXISTS nmarket_flats_rooms_price_idx ON nmarket_flats (rooms, price_minor);

-- Price history: one row per flat and sighting (the post date), so re-parsing adds nothing.
CREATE TABLE nmarket_price_snapshots (
    id {{id}},
    flat_id BIGINT NOT NULL REFERENCES nmarket_flats (id) ON DELETE CASCADE,
    price_minor BIGINT NOT NULL
        CONSTRAINT nmarket_price_snapshots_price_check CHECK (price_minor > 0),
    seen_at {{timestamptz}} NOT NULL,
    post_id BIGINT NULL REFERENCES nmarket_posts (id) ON DELETE SET NULL,
    UNIQUE (flat_id, seen_at)
);
