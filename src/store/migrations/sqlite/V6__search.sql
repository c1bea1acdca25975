-- Full-text search (issue #6): interactions' subjects, messages' subjects
-- and text, contacts' names. `unicode61 remove_diacritics 2` folds case and
-- accents, like the Postgres twin (unaccent + the `simple` configuration).
-- External-content tables: the text lives once, in its own table; triggers
-- keep the index in step.

CREATE VIRTUAL TABLE interactions_fts USING fts5(
    subject, content = 'interactions', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER interactions_fts_insert AFTER INSERT ON interactions BEGIN
    INSERT INTO interactions_fts (rowid, subject) VALUES (new.id, new.subject);
END;
CREATE TRIGGER interactions_fts_delete AFTER DELETE ON interactions BEGIN
    INSERT INTO interactions_fts (interactions_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
END;
CREATE TRIGGER interactions_fts_update AFTER UPDATE OF subject ON interactions BEGIN
    INSERT INTO interactions_fts (interactions_fts, rowid, subject) VALUES ('delete', old.id, old.subject);
    INSERT INTO interactions_fts (rowid, subject) VALUES (new.id, new.subject);
END;
INSERT INTO interactions_fts (interactions_fts) VALUES ('rebuild');

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, text_body, content = 'messages', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text_body ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text_body)
    VALUES ('delete', old.id, old.subject, old.text_body);
    INSERT INTO messages_fts (rowid, subject, text_body) VALUES (new.id, new.subject, new.text_body);
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE VIRTUAL TABLE contacts_fts USING fts5(
    first_name, last_name, content = 'contacts', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2');
CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO contacts_fts (rowid, first_name, last_name) VALUES (new.id, new.first_name, new.last_name);
END;
CREATE TRIGGER contacts_fts_delete AFTER DELETE ON contacts BEGIN
    INSERT INTO contacts_fts (contacts_fts, rowid, first_name, last_name)
    VALUES ('delete', old.id, old.first_name, old.last_name);
END;
CREATE TRIGGER contacts_fts_update AFTER UPDATE OF first_name, last_name ON contacts BEGIN
    INSERT INTO contacts_fts (contacts_fts, rowid, first_name, last_name)
    VALUES ('delete', old.id, old.first_name, old.last_name);
    INSERT INTO contacts_fts (rowid, first_name, last_name) VALUES (new.id, new.first_name, new.last_name);
END;
INSERT INTO contacts_fts (contacts_fts) VALUES ('rebuild');
