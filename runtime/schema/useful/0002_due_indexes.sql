-- Let parse_messages' due query use chat_messages_pending_idx on SQLite: without statistics its
-- planner preferred this general index on parse_status and sorted every pending row.
DROP INDEX IF EXISTS chat_messages_parse_status_idx;
