-- Bans and unbans Telegram refused for want of the bot's rights (demoted, a right taken away,
-- removed from the chat) go back to the queue. Before e46d682 such a refusal was recorded
-- `failed` for good, and ban_monitor never plans the same key again, so the member stayed in
-- (or out) once the bot had its rights back. Since e46d682 monitors/moderation.py keeps the
-- action pending and retries it on RIGHTS_RETRY; this puts the old failed rows in that state:
-- pending, due now, their attempts and Telegram's refusal (last_error) kept.
--
-- A refusal for want of rights is recognised by the texts of
-- monitors.decisions.telegram.bot_lacks_rights, as stored in last_error (Telegram's
-- description, e.g. "Bad Request: not enough rights to restrict/ban chat member"). Only rows
-- whose member still needs the action, as ban_monitor plans it, come back: the latest action
-- of the member in that chat, in a chat still paid, and
-- - a ban: the member still in the chat by the memberships, and not entitled (staff, or a
--   subscription active or in a grace not run out); moderation also drops a ban of anyone
--   entitled by the time it is made;
-- - an unban: the member still banned there, and entitled (an unban is never checked again
--   before it is made, so one of someone who stopped paying must not come back).
UPDATE moderation_actions
SET status = 'pending', next_attempt_at = {{now}}, lease_owner = NULL, lease_expires_at = NULL
WHERE status = 'failed'
  AND (lower(last_error) LIKE '%not enough rights%'
       OR lower(last_error) LIKE '%chat_admin_required%'
       OR lower(last_error) LIKE '%bot is not an administrator%'
       OR lower(last_error) LIKE '%bot was kicked from the%'
       OR lower(last_error) LIKE '%bot is not a member of the%')
  AND EXISTS (
    SELECT 1 FROM chats c WHERE c.id = moderation_actions.chat_id AND c.is_managed)
  AND NOT EXISTS (
    SELECT 1 FROM moderation_actions later
    WHERE later.user_id = moderation_actions.user_id
      AND later.chat_id = moderation_actions.chat_id
      AND later.id > moderation_actions.id)
  AND EXISTS (
    SELECT 1 FROM memberships m
    WHERE m.user_id = moderation_actions.user_id AND m.chat_id = moderation_actions.chat_id
      AND ((moderation_actions.action = 'ban' AND m.status IN ('member', 'requested'))
           OR (moderation_actions.action = 'unban' AND m.status = 'banned')))
  -- entitled now: exactly when it is an unban
  AND (moderation_actions.action = 'unban') = EXISTS (
    SELECT 1 FROM users u
    WHERE u.id = moderation_actions.user_id
      AND (u.role <> 'member' OR EXISTS (
        SELECT 1 FROM subscriptions live WHERE live.user_id = u.id
          AND (live.status = 'active'
               OR (live.status = 'grace' AND live.grace_until > {{now}})))));
