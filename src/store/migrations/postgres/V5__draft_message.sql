-- Drafts (issue #5), Postgres dialect; the SQLite twin is migrations/sqlite/V5__draft_message.sql.
-- The message a reply or forward draft answers (the `message` of
-- `POST /interactions/{id}/messages`), so that a restored draft is sent as it
-- was meant. NULL: the default original (the last customer mail).
ALTER TABLE drafts ADD COLUMN message_row_id bigint REFERENCES messages (id);
