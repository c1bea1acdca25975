-- Full-text search (issue #6): interactions' subjects, messages' subjects
-- and text, contacts' names, as generated tsvector columns with GIN indexes.
-- Accent-insensitive through unaccent (a trusted extension: the database
-- owner may create it). Text is split on anything but letters and digits
-- before parsing, so that an address or a dotted number becomes words, as
-- SQLite's unicode61 tokenizer makes them: both stores find the same.

CREATE EXTENSION IF NOT EXISTS unaccent;

-- unaccent() is only STABLE (its dictionary could change); generated columns
-- need IMMUTABLE, so this fixes the dictionary.
CREATE FUNCTION mailroom_search_text(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT regexp_replace(lower(unaccent('unaccent'::regdictionary, $1)), '[^[:alnum:]]+', ' ', 'g') $$;

ALTER TABLE interactions ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple', mailroom_search_text(subject))) STORED;
CREATE INDEX interactions_search ON interactions USING gin (search);

ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple',
        mailroom_search_text(coalesce(subject, '') || ' ' || coalesce(text_body, '')))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);

ALTER TABLE contacts ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('simple',
        mailroom_search_text(coalesce(first_name, '') || ' ' || coalesce(last_name, '')))) STORED;
CREATE INDEX contacts_search ON contacts USING gin (search);
