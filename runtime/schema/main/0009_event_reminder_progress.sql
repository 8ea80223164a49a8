-- The latest reminder window ('24h', then '1h') eventsmonitor has dealt with for a
-- registration: its reminder enqueued, or passed over (the member registered inside that
-- window, or had the reminder already). NULL: none yet. eventsmonitor reads only registrations
-- with a window left to deal with, so each tick gets past the ones it handled; before, it read
-- the same first EVENTS_BATCH_SIZE registrations every tick and the rest were never reminded.
ALTER TABLE event_registrations ADD COLUMN last_reminder {{text}} NULL
    CONSTRAINT event_registrations_last_reminder_check CHECK (last_reminder IN ('24h', '1h'));

-- What was enqueued before, from event_notifications (one row per reminder sent).
UPDATE event_registrations SET last_reminder = '1h'
WHERE EXISTS (
    SELECT 1 FROM event_notifications n
    WHERE n.event_id = event_registrations.event_id AND n.user_id = event_registrations.user_id
      AND n.kind = '1h');
UPDATE event_registrations SET last_reminder = '24h'
WHERE last_reminder IS NULL AND EXISTS (
    SELECT 1 FROM event_notifications n
    WHERE n.event_id = event_registrations.event_id AND n.user_id = event_registrations.user_id
      AND n.kind = '24h');
