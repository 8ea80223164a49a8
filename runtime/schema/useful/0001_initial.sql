-- useful: the inbox of chat messages and channel posts the bot saw, and the useful ones.
-- Shares PostgreSQL schema `bot` with audio, nmarket and tradeagent: names are unique there.

-- The bot inserts every message and channel post here (ON CONFLICT (chat_id, message_id) updates
-- an edit and sets parse_status back to 'pending'); parse_messages claims pending rows.
CREATE TABLE chat_messages (
    id {{id}},
    chat_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    chat_title {{text}} NULL,
    chat_username {{text}} NULL,
    from_user_id BIGINT NULL,
    from_username {{text}} NULL,
    kind {{text}} NOT NULL
        CONSTRAINT chat_messages_kind_check CHECK (kind IN ('message', 'channel_post', 'voice')),
    -- text, or the caption of a media message
    text {{text}} NULL,
    -- Telegram's message date
    message_date {{timestamptz}} NOT NULL,
    edited_at {{timestamptz}} NULL,
    raw {{json}} NOT NULL,
    received_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    parse_status {{text}} NOT NULL DEFAULT 'pending'
        CONSTRAINT chat_messages_parse_status_check
        CHECK (parse_status IN ('pending', 'parsed', 'unparsed', 'ignored', 'failed')),
    parse_attempts INTEGER NOT NULL DEFAULT 0,
    parse_error {{text}} NULL,
    parsed_at {{timestamptz}} NULL,
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    UNIQUE (chat_id, message_id)
);
CREATE INDEX IF NOT EXISTS chat_messages_pending_idx
    ON chat_messages (received_at) WHERE parse_status = 'pending';
CREATE INDEX IF NOT EXISTS chat_messages_chat_date_idx ON chat_messages (chat_id, message_date);
CREATE INDEX IF NOT EXISTS chat_messages_parse_status_idx ON chat_messages (parse_status);

-- The rules that make a message useful; configurable from the admin.
CREATE TABLE useful_rules (
    id {{id}},
    kind {{text}} NOT NULL
        CONSTRAINT useful_rules_kind_check CHECK (kind IN ('hashtag', 'keyword', 'link', 'regex')),
    pattern {{text}} NOT NULL,
    weight INTEGER NOT NULL DEFAULT 1,
    is_active {{bool}} NOT NULL DEFAULT TRUE,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (kind, pattern)
);

CREATE TABLE useful_messages (
    id {{id}},
    chat_message_id BIGINT NOT NULL UNIQUE REFERENCES chat_messages (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    -- the rules that matched, e.g. ["hashtag:#ипотека", "link"]
    matched_rules {{json}} NOT NULL,
    score INTEGER NOT NULL DEFAULT 0,
    text {{text}} NULL,
    message_date {{timestamptz}} NOT NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX IF NOT EXISTS useful_messages_date_idx ON useful_messages (message_date);
CREATE INDEX IF NOT EXISTS useful_messages_chat_idx ON useful_messages (chat_id, message_id);
