-- Broadcasts: a message staff send from the admin to the active members (or one tariff's).
--
-- The message itself goes through the outbox (notifymonitor delivers it at Telegram's limits);
-- these tables record who asked, whom it was for, and let the admin count its progress from
-- the recipients' outbox rows.

CREATE TABLE broadcasts (
    id {{id}},
    -- the token of the confirmation form: submitting the same form twice finds this row
    idempotence_key {{text}} NOT NULL UNIQUE,
    text {{text}} NOT NULL
        CONSTRAINT broadcasts_text_check CHECK (length(text) BETWEEN 1 AND 4096),
    audience {{text}} NOT NULL
        CONSTRAINT broadcasts_audience_check CHECK (audience IN ('active', 'tariff')),
    tariff_id BIGINT NULL REFERENCES tariffs (id) ON DELETE NO ACTION,
    -- the community's calendar day ('YYYY-MM-DD', DOMOS_TIMEZONE) and the broadcast's number in
    -- it: "at most N a day" is a unique key, so two concurrent submits cannot both take the
    -- last one
    local_day {{text}} NOT NULL,
    day_slot INTEGER NOT NULL CONSTRAINT broadcasts_day_slot_check CHECK (day_slot >= 1),
    recipients_count INTEGER NOT NULL DEFAULT 0,
    -- queuing: recipients chosen, outbox rows being written; queued: every one written
    status {{text}} NOT NULL DEFAULT 'queuing'
        CONSTRAINT broadcasts_status_check CHECK (status IN ('queuing', 'queued')),
    created_by {{text}} NOT NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    queued_at {{timestamptz}} NULL,
    CONSTRAINT broadcasts_tariff_check CHECK ((audience = 'tariff') = (tariff_id IS NOT NULL)),
    CONSTRAINT broadcasts_queued_check CHECK (status <> 'queued' OR queued_at IS NOT NULL),
    UNIQUE (local_day, day_slot)
);
CREATE INDEX IF NOT EXISTS broadcasts_created_idx ON broadcasts (created_at);

-- Whom a broadcast was for, fixed when it was confirmed; `outbox_dedupe_key` names the outbox
-- row of each (written after this row, so a missing outbox row is a recipient still to queue).
CREATE TABLE broadcast_recipients (
    id {{id}},
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL,
    outbox_dedupe_key {{text}} NOT NULL UNIQUE,
    UNIQUE (broadcast_id, user_id)
);
