-- audio: voice notes and audio files to download through getFile, deduplicated by file_unique_id.
-- Shares PostgreSQL schema `bot` with nmarket, useful and tradeagent: names are prefixed.

CREATE TABLE audio_files (
    id {{id}},
    -- stable across bots and time: the dedupe key; file_id is what getFile takes
    file_unique_id {{text}} NOT NULL UNIQUE,
    file_id {{text}} NOT NULL,
    kind {{text}} NOT NULL DEFAULT 'voice'
        CONSTRAINT audio_files_kind_check CHECK (kind IN ('voice', 'audio', 'video_note')),
    chat_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    from_user_id BIGINT NULL,
    duration_s INTEGER NULL CONSTRAINT audio_files_duration_check CHECK (duration_s >= 0),
    size_bytes BIGINT NULL CONSTRAINT audio_files_size_check CHECK (size_bytes >= 0),
    mime_type {{text}} NULL,
    status {{text}} NOT NULL DEFAULT 'queued'
        CONSTRAINT audio_files_status_check
        CHECK (status IN ('queued', 'downloading', 'downloaded', 'failed', 'too_large')),
    -- relative to the audio directory
    path {{text}} NULL,
    sha256 {{text}} NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    last_error {{text}} NULL,
    downloaded_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    CONSTRAINT audio_files_downloaded_check
        CHECK (status <> 'downloaded' OR (path IS NOT NULL AND downloaded_at IS NOT NULL))
);
-- Downloads due: queued ones, and 'downloading' ones whose worker died (lease expired).
CREATE INDEX IF NOT EXISTS audio_files_due_idx
    ON audio_files (next_attempt_at) WHERE status IN ('queued', 'downloading');
CREATE INDEX IF NOT EXISTS audio_files_message_idx ON audio_files (chat_id, message_id);
