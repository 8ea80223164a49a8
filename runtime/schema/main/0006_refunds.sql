-- Refunds: money YooKassa returned to a member, recorded by payment_monitor from a
-- `refund.succeeded` notification after fetching the refund (GET /v3/refunds/{id}): the body of
-- a notification is never trusted. One row per provider refund, so a repeated notification
-- changes nothing.

CREATE TABLE refunds (
    id {{id}},
    provider {{text}} NOT NULL DEFAULT 'yookassa',
    provider_refund_id {{text}} NOT NULL,
    payment_id BIGINT NOT NULL REFERENCES payments (id) ON DELETE NO ACTION,
    amount_minor BIGINT NOT NULL CONSTRAINT refunds_amount_check CHECK (amount_minor > 0),
    currency {{text}} NOT NULL DEFAULT 'RUB',
    -- full: with it, the payment's whole amount is refunded; partial: some is left
    kind {{text}} NOT NULL CONSTRAINT refunds_kind_check CHECK (kind IN ('full', 'partial')),
    -- what it did: access_ended (the payment paid the live period, which ended with it), or
    -- none (a partial refund, or a payment that no longer pays the live period)
    effect {{text}} NOT NULL
        CONSTRAINT refunds_effect_check CHECK (effect IN ('access_ended', 'none')),
    -- the subscription the refund ended (effect access_ended)
    subscription_id BIGINT NULL REFERENCES subscriptions (id) ON DELETE NO ACTION,
    description {{text}} NULL,
    -- the provider's created_at of the refund
    refunded_at {{timestamptz}} NULL,
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    UNIQUE (provider, provider_refund_id),
    CONSTRAINT refunds_effect_subscription_check
        CHECK ((effect = 'access_ended') = (subscription_id IS NOT NULL))
);
-- A payment's refunds (the admin's inline; the sum that tells a full refund).
CREATE INDEX IF NOT EXISTS refunds_payment_idx ON refunds (payment_id);
-- The admin's list, newest first.
CREATE INDEX IF NOT EXISTS refunds_created_idx ON refunds (created_at);
