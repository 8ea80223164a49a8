-- main: members, money, chats, notifications, events, surveys, moderation.
--
-- Conventions (runtime/schema/README.md): money in minor units (BIGINT), timestamps UTC,
-- enums as TEXT with a named CHECK, named so that both backends report the same name.
-- Work-claiming queues carry lease_owner / lease_expires_at and a "due" partial index.
-- ON DELETE: money and audit rows NO ACTION, i.e. refused (history must survive), per-member
-- state CASCADE. Not RESTRICT: SQLite enforces RESTRICT with a trigger and reports
-- SQLITE_CONSTRAINT_TRIGGER instead of a foreign-key error; NO ACTION refuses the same deletes.

-- Members -------------------------------------------------------------------------------------

CREATE TABLE users (
    id {{id}},
    telegram_id BIGINT NOT NULL UNIQUE,
    username {{text}} NULL,
    first_name {{text}} NULL,
    last_name {{text}} NULL,
    phone {{text}} NULL,
    language_code {{text}} NULL,
    role {{text}} NOT NULL DEFAULT 'member'
        CONSTRAINT users_role_check CHECK (role IN ('member', 'staff', 'admin')),
    -- false after Telegram answered 403 (blocked, deactivated); the relay stops sending.
    is_reachable {{bool}} NOT NULL DEFAULT TRUE,
    blocked_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    CONSTRAINT users_blocked_check CHECK (is_reachable OR blocked_at IS NOT NULL)
);

CREATE TABLE tariffs (
    id {{id}},
    code {{text}} NOT NULL UNIQUE,
    title {{text}} NOT NULL,
    description {{text}} NULL,
    price_minor BIGINT NOT NULL CONSTRAINT tariffs_price_check CHECK (price_minor > 0),
    currency {{text}} NOT NULL DEFAULT 'RUB'
        CONSTRAINT tariffs_currency_check CHECK (length(currency) = 3 AND currency = upper(currency)),
    period_days INTEGER NOT NULL CONSTRAINT tariffs_period_check CHECK (period_days > 0),
    is_active {{bool}} NOT NULL DEFAULT TRUE,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);

-- Money ---------------------------------------------------------------------------------------

CREATE TABLE payment_methods (
    id {{id}},
    provider {{text}} NOT NULL DEFAULT 'yookassa',
    provider_method_id {{text}} NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    method_type {{text}} NOT NULL,
    title {{text}} NULL,
    card_last4 {{text}} NULL
        CONSTRAINT payment_methods_last4_check CHECK (card_last4 IS NULL OR length(card_last4) = 4),
    card_type {{text}} NULL,
    card_expiry_month INTEGER NULL
        CONSTRAINT payment_methods_expiry_month_check
        CHECK (card_expiry_month IS NULL OR card_expiry_month BETWEEN 1 AND 12),
    card_expiry_year INTEGER NULL,
    -- the provider agreed to keep it for recurring charges (payment_method.saved)
    is_saved {{bool}} NOT NULL DEFAULT FALSE,
    revoked_at {{timestamptz}} NULL,
    revoked_reason {{text}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (provider, provider_method_id)
);
CREATE INDEX IF NOT EXISTS payment_methods_user_idx ON payment_methods (user_id);

CREATE TABLE subscriptions (
    id {{id}},
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    tariff_id BIGINT NOT NULL REFERENCES tariffs (id) ON DELETE NO ACTION,
    status {{text}} NOT NULL
        CONSTRAINT subscriptions_status_check
        CHECK (status IN ('active', 'grace', 'expired', 'canceled')),
    current_period_start {{timestamptz}} NOT NULL,
    current_period_end {{timestamptz}} NOT NULL,
    grace_until {{timestamptz}} NULL,
    auto_renew {{bool}} NOT NULL DEFAULT TRUE,
    payment_method_id BIGINT NULL REFERENCES payment_methods (id) ON DELETE SET NULL,
    next_charge_at {{timestamptz}} NULL,
    -- why auto-renewal stopped: 'user', or the hard decline reason (card_expired, ...)
    auto_renew_stopped_reason {{text}} NULL,
    canceled_at {{timestamptz}} NULL,
    expired_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    CONSTRAINT subscriptions_period_check CHECK (current_period_end > current_period_start),
    CONSTRAINT subscriptions_grace_check CHECK (status <> 'grace' OR grace_until IS NOT NULL)
);
-- At most one live subscription per member: a second activation of the same payment fails.
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_one_live_per_user_idx
    ON subscriptions (user_id) WHERE status IN ('active', 'grace');
-- tsmonitor: reminders and active -> grace by period end; grace -> expired by grace_until.
CREATE INDEX IF NOT EXISTS subscriptions_status_period_end_idx
    ON subscriptions (status, current_period_end);
CREATE INDEX IF NOT EXISTS subscriptions_grace_until_idx
    ON subscriptions (grace_until) WHERE status = 'grace';
-- recurrent_payments: auto-renewing subscriptions whose charge is due.
CREATE INDEX IF NOT EXISTS subscriptions_next_charge_idx
    ON subscriptions (next_charge_at) WHERE auto_renew AND status IN ('active', 'grace');
CREATE INDEX IF NOT EXISTS subscriptions_user_idx ON subscriptions (user_id);

-- One row per reminder actually enqueued: the unique key makes "once per period" a constraint.
CREATE TABLE subscription_reminders (
    id {{id}},
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    period_end {{timestamptz}} NOT NULL,
    -- 'T-7', 'T-3', 'T-1', 'T-0' (days before the end; the set is configurable) or an event
    kind {{text}} NOT NULL
        CONSTRAINT subscription_reminders_kind_check
        CHECK (kind LIKE 'T-%'
               OR kind IN ('grace_started', 'expired', 'charge_failed', 'auto_renew_stopped')),
    outbox_dedupe_key {{text}} NULL,
    sent_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (subscription_id, period_end, kind)
);

CREATE TABLE payments (
    id {{id}},
    provider {{text}} NOT NULL DEFAULT 'yookassa',
    -- NULL until the provider answered; the row and its key are committed before the call.
    provider_payment_id {{text}} NULL,
    idempotence_key {{text}} NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    tariff_id BIGINT NOT NULL REFERENCES tariffs (id) ON DELETE NO ACTION,
    subscription_id BIGINT NULL REFERENCES subscriptions (id) ON DELETE NO ACTION,
    payment_method_id BIGINT NULL REFERENCES payment_methods (id) ON DELETE SET NULL,
    kind {{text}} NOT NULL CONSTRAINT payments_kind_check CHECK (kind IN ('first', 'renewal')),
    amount_minor BIGINT NOT NULL CONSTRAINT payments_amount_check CHECK (amount_minor > 0),
    currency {{text}} NOT NULL DEFAULT 'RUB',
    -- 'created': committed locally, provider outcome unknown; the rest mirror YooKassa.
    status {{text}} NOT NULL DEFAULT 'created'
        CONSTRAINT payments_status_check
        CHECK (status IN ('created', 'pending', 'waiting_for_capture', 'succeeded', 'canceled')),
    cancellation_party {{text}} NULL,
    cancellation_reason {{text}} NULL,
    description {{text}} NULL,
    confirmation_url {{text}} NULL,
    save_payment_method {{bool}} NOT NULL DEFAULT FALSE,
    metadata {{json}} NULL,
    -- polling with backoff (payment_monitor)
    check_attempts INTEGER NOT NULL DEFAULT 0,
    next_check_at {{timestamptz}} NULL,
    last_error {{text}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    paid_at {{timestamptz}} NULL,
    -- set in the same transaction that applied the outcome (extended the subscription, ...):
    -- `UPDATE ... SET processed_at = ? WHERE id = ? AND processed_at IS NULL` applies it once.
    processed_at {{timestamptz}} NULL,
    applied_period_end {{timestamptz}} NULL,
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    UNIQUE (provider, provider_payment_id),
    CONSTRAINT payments_renewal_check CHECK (kind <> 'renewal' OR subscription_id IS NOT NULL),
    CONSTRAINT payments_paid_check CHECK (status <> 'succeeded' OR paid_at IS NOT NULL),
    CONSTRAINT payments_processed_check
        CHECK (processed_at IS NULL OR status IN ('succeeded', 'canceled'))
);
-- payment_monitor: open payments to poll, oldest first / due first.
CREATE INDEX IF NOT EXISTS payments_open_created_idx
    ON payments (created_at) WHERE status IN ('created', 'pending', 'waiting_for_capture');
CREATE INDEX IF NOT EXISTS payments_open_next_check_idx
    ON payments (next_check_at) WHERE status IN ('created', 'pending', 'waiting_for_capture');
-- payment_monitor: final outcomes not yet applied.
CREATE INDEX IF NOT EXISTS payments_unprocessed_idx
    ON payments (updated_at) WHERE processed_at IS NULL AND status IN ('succeeded', 'canceled');
-- admin and revenue: payments by status and date, paid by date.
CREATE INDEX IF NOT EXISTS payments_status_created_idx ON payments (status, created_at);
CREATE INDEX IF NOT EXISTS payments_paid_at_idx ON payments (paid_at) WHERE status = 'succeeded';
CREATE INDEX IF NOT EXISTS payments_user_idx ON payments (user_id, created_at);
CREATE INDEX IF NOT EXISTS payments_subscription_idx ON payments (subscription_id);

-- One row per attempt to charge a subscription period with the saved method. Committed, with its
-- idempotence key, before the provider is called; a retry after a crash reuses the key.
CREATE TABLE charge_attempts (
    id {{id}},
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE NO ACTION,
    -- the end of the period being renewed: identifies the period
    period_end {{timestamptz}} NOT NULL,
    attempt_no INTEGER NOT NULL CONSTRAINT charge_attempts_attempt_no_check CHECK (attempt_no >= 1),
    idempotence_key {{text}} NOT NULL UNIQUE,
    payment_id BIGINT NULL UNIQUE REFERENCES payments (id) ON DELETE NO ACTION,
    payment_method_id BIGINT NULL REFERENCES payment_methods (id) ON DELETE SET NULL,
    amount_minor BIGINT NOT NULL CONSTRAINT charge_attempts_amount_check CHECK (amount_minor > 0),
    currency {{text}} NOT NULL DEFAULT 'RUB',
    status {{text}} NOT NULL DEFAULT 'created'
        CONSTRAINT charge_attempts_status_check
        CHECK (status IN ('created', 'pending', 'succeeded', 'declined')),
    decline_reason {{text}} NULL,
    decline_kind {{text}} NULL
        CONSTRAINT charge_attempts_decline_kind_check
        CHECK (decline_kind IS NULL OR decline_kind IN ('soft', 'hard', 'unknown')),
    next_retry_at {{timestamptz}} NULL,
    last_error {{text}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    finished_at {{timestamptz}} NULL,
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    UNIQUE (subscription_id, period_end, attempt_no),
    CONSTRAINT charge_attempts_declined_check
        CHECK (status <> 'declined' OR decline_kind IS NOT NULL)
);
-- A period is never charged twice: at most one open or successful attempt per period.
CREATE UNIQUE INDEX IF NOT EXISTS charge_attempts_one_live_per_period_idx
    ON charge_attempts (subscription_id, period_end)
    WHERE status IN ('created', 'pending', 'succeeded');
-- recurrent_payments: open attempts to reconcile with the provider.
CREATE INDEX IF NOT EXISTS charge_attempts_open_idx
    ON charge_attempts (updated_at) WHERE status IN ('created', 'pending');
-- recurrent_payments: soft declines whose retry is due.
CREATE INDEX IF NOT EXISTS charge_attempts_retry_idx
    ON charge_attempts (next_retry_at) WHERE next_retry_at IS NOT NULL;

-- Provider notifications (YooKassa webhooks), recorded once, processed by payment_monitor.
CREATE TABLE provider_events (
    id {{id}},
    provider {{text}} NOT NULL DEFAULT 'yookassa',
    -- YooKassa events carry no id: the key is "<event type>:<object id>" (e.g. payment.succeeded:2d…)
    event_key {{text}} NOT NULL,
    event_type {{text}} NOT NULL,
    object_id {{text}} NOT NULL,
    payload {{json}} NOT NULL,
    source_ip {{text}} NULL,
    received_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    last_error {{text}} NULL,
    processed_at {{timestamptz}} NULL,
    outcome {{text}} NULL
        CONSTRAINT provider_events_outcome_check
        CHECK (outcome IS NULL OR outcome IN ('applied', 'ignored', 'failed')),
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    UNIQUE (provider, event_key),
    CONSTRAINT provider_events_processed_check CHECK ((processed_at IS NULL) = (outcome IS NULL))
);
CREATE INDEX IF NOT EXISTS provider_events_due_idx
    ON provider_events (next_attempt_at) WHERE processed_at IS NULL;
CREATE INDEX IF NOT EXISTS provider_events_object_idx ON provider_events (provider, object_id);

-- Chats ---------------------------------------------------------------------------------------

CREATE TABLE chats (
    id {{id}},
    telegram_chat_id BIGINT NOT NULL UNIQUE,
    title {{text}} NULL,
    username {{text}} NULL,
    kind {{text}} NOT NULL
        CONSTRAINT chats_kind_check CHECK (kind IN ('private', 'group', 'supergroup', 'channel')),
    -- the paid community chats: join requests checked, members past grace removed
    is_managed {{bool}} NOT NULL DEFAULT FALSE,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);

CREATE TABLE memberships (
    id {{id}},
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    status {{text}} NOT NULL
        CONSTRAINT memberships_status_check
        CHECK (status IN ('requested', 'member', 'left', 'banned')),
    joined_at {{timestamptz}} NULL,
    left_at {{timestamptz}} NULL,
    banned_at {{timestamptz}} NULL,
    unbanned_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (user_id, chat_id),
    CONSTRAINT memberships_banned_check CHECK (status <> 'banned' OR banned_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS memberships_chat_status_idx ON memberships (chat_id, status);
CREATE INDEX IF NOT EXISTS memberships_banned_idx ON memberships (user_id) WHERE status = 'banned';

CREATE TABLE invite_links (
    id {{id}},
    chat_id BIGINT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id BIGINT NULL REFERENCES users (id) ON DELETE CASCADE,
    payment_id BIGINT NULL REFERENCES payments (id) ON DELETE SET NULL,
    link {{text}} NOT NULL UNIQUE,
    name {{text}} NULL CONSTRAINT invite_links_name_check CHECK (name IS NULL OR length(name) <= 32),
    creates_join_request {{bool}} NOT NULL DEFAULT FALSE,
    member_limit INTEGER NULL
        CONSTRAINT invite_links_member_limit_check
        CHECK (member_limit IS NULL OR member_limit BETWEEN 1 AND 99999),
    expire_at {{timestamptz}} NULL,
    revoked_at {{timestamptz}} NULL,
    used_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    -- Telegram refuses a member limit on a join-request link
    CONSTRAINT invite_links_join_request_check
        CHECK (NOT (creates_join_request AND member_limit IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS invite_links_user_chat_idx ON invite_links (user_id, chat_id);

-- Notifications -------------------------------------------------------------------------------

-- The outbox: producers insert in their own transaction (ON CONFLICT (dedupe_key) DO NOTHING);
-- notifymonitor claims due rows, marks them 'sending' under a lease, then 'sent'.
CREATE TABLE outbox (
    id {{id}},
    dedupe_key {{text}} NOT NULL UNIQUE,
    chat_id BIGINT NOT NULL,
    user_id BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    kind {{text}} NOT NULL DEFAULT 'notification',
    text {{text}} NOT NULL,
    parse_mode {{text}} NULL
        CONSTRAINT outbox_parse_mode_check
        CHECK (parse_mode IS NULL OR parse_mode IN ('HTML', 'MarkdownV2', 'Markdown')),
    reply_markup {{json}} NULL,
    disable_web_page_preview {{bool}} NOT NULL DEFAULT FALSE,
    -- lower sends first: receipts before bulk survey mail
    priority INTEGER NOT NULL DEFAULT 100,
    status {{text}} NOT NULL DEFAULT 'queued'
        CONSTRAINT outbox_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    last_error {{text}} NULL,
    last_error_code INTEGER NULL,
    -- long texts go out in parts; after a crash only the remaining parts are sent
    parts_sent INTEGER NOT NULL DEFAULT 0,
    telegram_message_id BIGINT NULL,
    sent_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    CONSTRAINT outbox_sent_check CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);
-- The relay's "next due": queued or retrying rows whose time has come.
CREATE INDEX IF NOT EXISTS outbox_due_idx
    ON outbox (next_attempt_at, priority) WHERE status IN ('queued', 'failed');
-- Rows in flight whose lease ran out (the sender crashed) become due again.
CREATE INDEX IF NOT EXISTS outbox_sending_lease_idx
    ON outbox (lease_expires_at) WHERE status = 'sending';
CREATE INDEX IF NOT EXISTS outbox_status_created_idx ON outbox (status, created_at);
CREATE INDEX IF NOT EXISTS outbox_chat_idx ON outbox (chat_id, created_at);

-- Events --------------------------------------------------------------------------------------

CREATE TABLE events (
    id {{id}},
    title {{text}} NOT NULL,
    description {{text}} NULL,
    location {{text}} NULL,
    url {{text}} NULL,
    starts_at {{timestamptz}} NOT NULL,
    ends_at {{timestamptz}} NULL,
    capacity INTEGER NULL CONSTRAINT events_capacity_check CHECK (capacity IS NULL OR capacity > 0),
    status {{text}} NOT NULL DEFAULT 'published'
        CONSTRAINT events_status_check CHECK (status IN ('draft', 'published', 'canceled')),
    announced_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);
CREATE INDEX IF NOT EXISTS events_upcoming_idx ON events (starts_at) WHERE status = 'published';
CREATE INDEX IF NOT EXISTS events_unannounced_idx
    ON events (created_at) WHERE status = 'published' AND announced_at IS NULL;

CREATE TABLE event_registrations (
    id {{id}},
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status {{text}} NOT NULL DEFAULT 'registered'
        CONSTRAINT event_registrations_status_check CHECK (status IN ('registered', 'canceled')),
    registered_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    canceled_at {{timestamptz}} NULL,
    UNIQUE (event_id, user_id)
);
CREATE INDEX IF NOT EXISTS event_registrations_user_idx ON event_registrations (user_id);

-- One row per (event, member, kind) actually enqueued: sent once by construction.
CREATE TABLE event_notifications (
    id {{id}},
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind {{text}} NOT NULL
        CONSTRAINT event_notifications_kind_check
        CHECK (kind IN ('announcement', '24h', '1h', 'canceled')),
    outbox_dedupe_key {{text}} NULL,
    sent_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (event_id, user_id, kind)
);

-- Surveys -------------------------------------------------------------------------------------

CREATE TABLE surveys (
    id {{id}},
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month {{text}} NOT NULL
        CONSTRAINT surveys_month_check
        CHECK (length(month) = 7 AND substr(month, 5, 1) = '-'
               AND substr(month, 1, 4) BETWEEN '2000' AND '2999'
               AND substr(month, 6, 2) BETWEEN '01' AND '12'),
    status {{text}} NOT NULL DEFAULT 'sent'
        CONSTRAINT surveys_status_check
        CHECK (status IN ('sent', 'in_progress', 'answered', 'expired')),
    sent_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    reminded_at {{timestamptz}} NULL,
    answered_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (user_id, month),
    CONSTRAINT surveys_answered_check CHECK (status <> 'answered' OR answered_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS surveys_month_status_idx ON surveys (month, status);
-- monthly_anket: non-responders not yet reminded.
CREATE INDEX IF NOT EXISTS surveys_unreminded_idx
    ON surveys (sent_at) WHERE status IN ('sent', 'in_progress') AND reminded_at IS NULL;

CREATE TABLE survey_responses (
    id {{id}},
    survey_id BIGINT NOT NULL REFERENCES surveys (id) ON DELETE CASCADE,
    question_key {{text}} NOT NULL,
    answer {{text}} NOT NULL,
    answered_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (survey_id, question_key)
);

-- Moderation ----------------------------------------------------------------------------------

-- Every ban/unban ban_monitor decides, recorded before the Bot API call and claimed like a queue.
CREATE TABLE moderation_actions (
    id {{id}},
    -- e.g. "ban:<subscription id>:<period end>:<chat id>": deciding twice inserts once
    idempotence_key {{text}} NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    chat_id BIGINT NOT NULL REFERENCES chats (id) ON DELETE NO ACTION,
    subscription_id BIGINT NULL REFERENCES subscriptions (id) ON DELETE SET NULL,
    action {{text}} NOT NULL
        CONSTRAINT moderation_actions_action_check CHECK (action IN ('ban', 'unban')),
    reason {{text}} NOT NULL,
    status {{text}} NOT NULL DEFAULT 'pending'
        CONSTRAINT moderation_actions_status_check
        CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    last_error {{text}} NULL,
    telegram_result {{json}} NULL,
    requested_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    done_at {{timestamptz}} NULL,
    lease_owner {{text}} NULL,
    lease_expires_at {{timestamptz}} NULL,
    CONSTRAINT moderation_actions_done_check CHECK (status <> 'done' OR done_at IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS moderation_actions_due_idx
    ON moderation_actions (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS moderation_actions_user_idx
    ON moderation_actions (user_id, requested_at);

-- Monitors ------------------------------------------------------------------------------------

-- Last known state of each monitor, for the web overview and cross-replica health.
CREATE TABLE monitor_heartbeats (
    id {{id}},
    monitor {{text}} NOT NULL UNIQUE,
    instance {{text}} NULL,
    last_tick_at {{timestamptz}} NULL,
    last_success_at {{timestamptz}} NULL,
    last_outcome {{text}} NULL
        CONSTRAINT monitor_heartbeats_outcome_check
        CHECK (last_outcome IS NULL OR last_outcome IN ('succeeded', 'failed', 'skipped')),
    last_error {{text}} NULL,
    items_processed_total BIGINT NOT NULL DEFAULT 0,
    updated_at {{timestamptz}} NOT NULL DEFAULT {{now}}
);
