-- mailroom schema, SQLite dialect. The Postgres twin (migrations/postgres/V1__init.sql)
-- has the same tables, columns, constraints and indexes; keep them in step.
--
-- Conventions:
-- * STRICT tables, so that a wrong type is an error here as it is in Postgres;
-- * ids are `INTEGER PRIMARY KEY AUTOINCREMENT`: like a Postgres identity, an id
--   is never reused, even after a row is deleted (ids are handed to clients);
-- * times are INTEGER milliseconds since the Unix epoch (UTC);
-- * booleans are INTEGER 0/1, json is TEXT (checked with json_valid), bytes are BLOB;
-- * enums are TEXT with a CHECK listing the names of src/domain/model.rs;
-- * text compares with BINARY (bytes), as the Postgres columns do with COLLATE "C";
-- * agents, queues and accounts are soft-deleted (`deleted_at`).

-- ---- people ---------------------------------------------------------------

CREATE TABLE agents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    email         TEXT,
    role          TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    capacity      INTEGER NOT NULL CHECK (capacity >= 0),
    -- argon2 PHC string; NULL means the agent cannot log in.
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
) STRICT;

-- Sessions are stored under the SHA-256 of their token; the token is never stored.
CREATE TABLE sessions (
    token_hash   BLOB NOT NULL PRIMARY KEY,
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_seen_at INTEGER
) STRICT;
CREATE INDEX sessions_agent ON sessions (agent_id);

-- ---- routing --------------------------------------------------------------

CREATE TABLE queues (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    name                    TEXT NOT NULL UNIQUE,
    strategy                TEXT NOT NULL
        CHECK (strategy IN ('ring_all', 'round_robin', 'longest_idle', 'fewest_active')),
    offer_timeout_secs      INTEGER NOT NULL CHECK (offer_timeout_secs >= 0),
    sticky_secs             INTEGER NOT NULL CHECK (sticky_secs >= 0),
    retry_backoff_secs      INTEGER NOT NULL CHECK (retry_backoff_secs >= 0),
    max_simultaneous_offers INTEGER CHECK (max_simultaneous_offers >= 0),
    auto_pause_after_missed INTEGER CHECK (auto_pause_after_missed >= 0),
    disposition_required    INTEGER NOT NULL DEFAULT 0 CHECK (disposition_required IN (0, 1)),
    -- round_robin: the agent who received this queue's previous offer, so that
    -- the rotation survives a restart.
    rr_last_agent_id        INTEGER REFERENCES agents (id),
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    deleted_at              INTEGER
) STRICT;

CREATE TABLE queue_members (
    queue_id INTEGER NOT NULL REFERENCES queues (id),
    agent_id INTEGER NOT NULL REFERENCES agents (id),
    PRIMARY KEY (queue_id, agent_id)
) STRICT;
CREATE INDEX queue_members_agent ON queue_members (agent_id);

-- ---- mail accounts --------------------------------------------------------

CREATE TABLE accounts (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    key                       TEXT NOT NULL UNIQUE,
    address                   TEXT NOT NULL,
    queue_id                  INTEGER NOT NULL REFERENCES queues (id),
    imap_host                 TEXT NOT NULL,
    imap_port                 INTEGER NOT NULL CHECK (imap_port BETWEEN 0 AND 65535),
    imap_tls                  TEXT NOT NULL CHECK (imap_tls IN ('none', 'starttls', 'tls')),
    imap_username             TEXT NOT NULL,
    -- Stored as given: the mailbox must log in with it. Never returned by the API.
    imap_password             TEXT NOT NULL DEFAULT '',
    imap_folder               TEXT NOT NULL,
    imap_accept_invalid_certs INTEGER NOT NULL DEFAULT 0 CHECK (imap_accept_invalid_certs IN (0, 1)),
    imap_poll_secs            INTEGER NOT NULL CHECK (imap_poll_secs >= 0),
    imap_sent_folder          TEXT,
    smtp_host                 TEXT NOT NULL,
    smtp_port                 INTEGER NOT NULL CHECK (smtp_port BETWEEN 0 AND 65535),
    smtp_tls                  TEXT NOT NULL CHECK (smtp_tls IN ('none', 'starttls', 'tls')),
    smtp_username             TEXT NOT NULL,
    smtp_password             TEXT NOT NULL DEFAULT '',
    smtp_accept_invalid_certs INTEGER NOT NULL DEFAULT 0 CHECK (smtp_accept_invalid_certs IN (0, 1)),
    -- The first sync imports mail whose INTERNALDATE is at or after this.
    import_since              INTEGER NOT NULL,
    subject_token             INTEGER NOT NULL DEFAULT 1 CHECK (subject_token IN (0, 1)),
    allow_mark_unread         INTEGER NOT NULL DEFAULT 1 CHECK (allow_mark_unread IN (0, 1)),
    show_preview              INTEGER NOT NULL DEFAULT 1 CHECK (show_preview IN (0, 1)),
    max_attachment_bytes      INTEGER NOT NULL CHECK (max_attachment_bytes >= 0),
    max_mail_bytes            INTEGER NOT NULL CHECK (max_mail_bytes >= 0),
    signature                 TEXT,
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    deleted_at                INTEGER
) STRICT;
CREATE INDEX accounts_queue ON accounts (queue_id);

-- The UID watermark of a mailbox. It advances in the same transaction that
-- commits the mail it covers (invariant 1).
CREATE TABLE mailbox_state (
    account_id  INTEGER NOT NULL PRIMARY KEY REFERENCES accounts (id),
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- ---- contacts -------------------------------------------------------------

CREATE TABLE contacts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    first_name  TEXT,
    last_name   TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    -- Set when this contact was merged into another; lookups follow it.
    merged_into INTEGER REFERENCES contacts (id)
) STRICT;

CREATE TABLE contact_emails (
    -- Lower-cased by the writer (EmailAddress::key), so that lookups are exact.
    email      TEXT NOT NULL PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX contact_emails_contact ON contact_emails (contact_id);

-- ---- admin-defined vocabularies ------------------------------------------

CREATE TABLE substatuses (
    name       TEXT NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;
INSERT INTO substatuses (name, created_at)
VALUES ('Pending', CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));

CREATE TABLE tags (
    name       TEXT NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

-- A tree of 1 to 3 levels. Interactions keep the chosen path by name (json), so
-- renaming or deleting a node never rewrites history.
CREATE TABLE dispositions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id  INTEGER REFERENCES dispositions (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    level      INTEGER NOT NULL CHECK (level BETWEEN 1 AND 3),
    created_at INTEGER NOT NULL,
    CHECK ((parent_id IS NULL) = (level = 1))
) STRICT;
-- UNIQUE (parent_id, name) would let two roots share a name (NULLs are distinct),
-- so roots and children get one partial index each.
CREATE UNIQUE INDEX dispositions_root_name ON dispositions (name) WHERE parent_id IS NULL;
CREATE UNIQUE INDEX dispositions_child_name ON dispositions (parent_id, name) WHERE parent_id IS NOT NULL;

CREATE TABLE canned_answers (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    title      TEXT NOT NULL,
    body_text  TEXT NOT NULL,
    body_html  TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- ---- interactions and messages ---------------------------------------------

CREATE TABLE interactions (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id             INTEGER NOT NULL REFERENCES accounts (id),
    queue_id               INTEGER NOT NULL REFERENCES queues (id),
    subject                TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('open', 'closed', 'closed_unmanaged')),
    -- Cleared when the customer replies; deleting a substatus clears it here.
    substatus              TEXT REFERENCES substatuses (name) ON UPDATE CASCADE ON DELETE SET NULL,
    owner_id               INTEGER REFERENCES agents (id),
    first_agent_id         INTEGER REFERENCES agents (id),
    contact_id             INTEGER REFERENCES contacts (id),
    priority               INTEGER NOT NULL DEFAULT 0,
    unread                 INTEGER NOT NULL DEFAULT 0 CHECK (unread IN (0, 1)),
    unread_count           INTEGER NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    reopened               INTEGER NOT NULL DEFAULT 0 CHECK (reopened IN (0, 1)),
    -- The chosen path, e.g. ["Sales", "Won"]: 1 to 3 names.
    disposition            TEXT CHECK (disposition IS NULL OR json_type(disposition) = 'array'),
    continues_id           INTEGER REFERENCES interactions (id),
    continued_in_id        INTEGER REFERENCES interactions (id),
    -- Bumped by every change of owner or status; claim compares it (invariant 2).
    version                INTEGER NOT NULL DEFAULT 1,
    -- When it (last) entered its queue; routing serves priority, then this.
    enqueued_at            INTEGER,
    created_at             INTEGER NOT NULL,
    -- Last activity.
    updated_at             INTEGER NOT NULL,
    closed_at              INTEGER,
    last_message_direction TEXT CHECK (last_message_direction IN ('in', 'out')),
    last_message_at        INTEGER,
    last_message_preview   TEXT,
    CHECK ((status = 'open') = (closed_at IS NULL))
) STRICT;
CREATE INDEX interactions_owner_status ON interactions (owner_id, status);
CREATE INDEX interactions_queue_status_owner ON interactions (queue_id, status, owner_id);
CREATE INDEX interactions_contact ON interactions (contact_id);
CREATE INDEX interactions_account_updated ON interactions (account_id, updated_at);
CREATE INDEX interactions_updated ON interactions (updated_at, id);
CREATE INDEX interactions_created ON interactions (created_at, id);
CREATE INDEX interactions_first_agent ON interactions (first_agent_id);

-- Raw bytes: mail sources and attachment contents, stored once per content.
CREATE TABLE blobs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256     BLOB NOT NULL UNIQUE,
    size       INTEGER NOT NULL CHECK (size >= 0),
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE messages (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    interaction_id    INTEGER NOT NULL REFERENCES interactions (id),
    account_id        INTEGER NOT NULL REFERENCES accounts (id),
    direction         TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    kind              TEXT NOT NULL CHECK (kind IN ('mail', 'auto_reply', 'note', 'supervisor_note')),
    -- NULL for notes (their author is author_agent_id).
    from_addr         TEXT,
    from_name         TEXT,
    -- json arrays of {"address", "name"?}
    to_addrs          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(to_addrs)),
    cc_addrs          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(cc_addrs)),
    bcc_addrs         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(bcc_addrs)),
    reply_to          TEXT,
    subject           TEXT NOT NULL DEFAULT '',
    text_body         TEXT,
    -- Already sanitised.
    html_body         TEXT,
    message_id_header TEXT,
    in_reply_to       TEXT,
    references_header TEXT,
    -- SHA-256 over From, Date, Subject and the body bytes (invariant 1).
    content_hash      BLOB,
    raw_blob_id       INTEGER REFERENCES blobs (id),
    author_agent_id   INTEGER REFERENCES agents (id),
    for_agent_id      INTEGER REFERENCES agents (id),
    -- Outgoing mail only: the outbox state, mirrored here for the API.
    delivery          TEXT CHECK (delivery IN ('queued', 'sent', 'failed')),
    delivery_error    TEXT,
    created_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX messages_interaction ON messages (interaction_id, created_at);
CREATE INDEX messages_message_id ON messages (account_id, message_id_header);
-- Inbound dedupe (invariant 1): the same Message-ID with the same content is one
-- mail; a reused Message-ID with other content is kept. Without a Message-ID the
-- content hash alone stands in for it.
CREATE UNIQUE INDEX messages_dedupe ON messages (account_id, message_id_header, content_hash)
    WHERE message_id_header IS NOT NULL AND content_hash IS NOT NULL;
CREATE UNIQUE INDEX messages_dedupe_no_id ON messages (account_id, content_hash)
    WHERE message_id_header IS NULL AND content_hash IS NOT NULL;

CREATE TABLE attachments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL: an upload not yet used in a message.
    message_row_id INTEGER REFERENCES messages (id),
    blob_id        INTEGER NOT NULL REFERENCES blobs (id),
    filename       TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    content_id     TEXT,
    is_inline      INTEGER NOT NULL DEFAULT 0 CHECK (is_inline IN (0, 1)),
    uploaded_by    INTEGER REFERENCES agents (id),
    created_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX attachments_message ON attachments (message_row_id);
CREATE INDEX attachments_blob ON attachments (blob_id);

-- ---- ingest bookkeeping -----------------------------------------------------

-- A mail that could not be parsed or was too large: kept raw, never blocking.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  INTEGER NOT NULL REFERENCES accounts (id),
    uidvalidity INTEGER,
    uid         INTEGER,
    blob_id     INTEGER NOT NULL REFERENCES blobs (id),
    reason      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
) STRICT;
CREATE INDEX quarantine_account ON quarantine (account_id, resolved_at);

-- One row per IMAP message ever ingested: what makes ingest idempotent on
-- (account, uidvalidity, uid) (invariant 1).
CREATE TABLE mail_receipts (
    account_id     INTEGER NOT NULL REFERENCES accounts (id),
    uidvalidity    INTEGER NOT NULL,
    uid            INTEGER NOT NULL,
    message_row_id INTEGER REFERENCES messages (id),
    quarantine_id  INTEGER REFERENCES quarantine (id),
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, uidvalidity, uid)
) STRICT;

-- ---- offers, drafts, tags --------------------------------------------------

CREATE TABLE offers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    interaction_id INTEGER NOT NULL REFERENCES interactions (id),
    queue_id       INTEGER NOT NULL REFERENCES queues (id),
    agent_id       INTEGER NOT NULL REFERENCES agents (id),
    status         TEXT NOT NULL
        CHECK (status IN ('offered', 'accepted', 'rejected', 'expired', 'rescinded')),
    reason         TEXT CHECK (reason IN ('taken', 'timeout', 'cancelled')),
    offered_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    decided_at     INTEGER,
    CHECK ((status = 'offered') = (decided_at IS NULL))
) STRICT;
CREATE INDEX offers_interaction ON offers (interaction_id);
CREATE INDEX offers_agent_status ON offers (agent_id, status);
CREATE INDEX offers_status ON offers (status, expires_at);
-- At most one live offer per agent and interaction.
CREATE UNIQUE INDEX offers_live ON offers (interaction_id, agent_id) WHERE status = 'offered';

-- One draft per interaction, owned by the agent who saved it.
CREATE TABLE drafts (
    interaction_id INTEGER NOT NULL PRIMARY KEY REFERENCES interactions (id),
    agent_id       INTEGER NOT NULL REFERENCES agents (id),
    mode           TEXT NOT NULL CHECK (mode IN ('reply', 'reply_all', 'forward')),
    to_addrs       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(to_addrs)),
    cc_addrs       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(cc_addrs)),
    bcc_addrs      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(bcc_addrs)),
    subject        TEXT NOT NULL DEFAULT '',
    text_body      TEXT,
    html_body      TEXT,
    -- json array of attachment ids
    attachments    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(attachments)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX drafts_agent ON drafts (agent_id);

CREATE TABLE interaction_tags (
    interaction_id INTEGER NOT NULL REFERENCES interactions (id),
    tag            TEXT NOT NULL REFERENCES tags (name) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (interaction_id, tag)
) STRICT;
CREATE INDEX interaction_tags_tag ON interaction_tags (tag, interaction_id);

-- ---- outgoing mail ----------------------------------------------------------

-- Invariant 4: an outgoing mail is committed here first, then sent.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_row_id  INTEGER NOT NULL UNIQUE REFERENCES messages (id),
    account_id      INTEGER NOT NULL REFERENCES accounts (id),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_account ON outbox (account_id, status);

-- ---- audit ------------------------------------------------------------------

-- Admin changes: who changed what, when.
CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    agent_id INTEGER REFERENCES agents (id),
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
) STRICT;
CREATE INDEX audit_log_at ON audit_log (at);
