-- mailroom schema, Postgres dialect. The SQLite twin (migrations/sqlite/V1__init.sql)
-- has the same tables, columns, constraints and indexes; keep them in step.
--
-- Conventions:
-- * ids are `bigint generated always as identity` (never reused);
-- * times are timestamptz (the application writes them, at millisecond precision);
-- * enums are text with a CHECK listing the names of src/domain/model.rs;
-- * names that are identities or sort keys (usernames, queue names, account keys,
--   tags, …) use COLLATE "C" so that uniqueness and ORDER BY compare bytes, exactly
--   as SQLite's BINARY collation does: both backends list in the same order;
-- * agents, queues and accounts are soft-deleted (`deleted_at`): interactions and
--   reports keep pointing at them.

-- ---- people ---------------------------------------------------------------

CREATE TABLE agents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text COLLATE "C" NOT NULL UNIQUE,
    name          text NOT NULL,
    email         text,
    role          text NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    capacity      integer NOT NULL CHECK (capacity >= 0),
    -- argon2 PHC string; NULL means the agent cannot log in.
    password_hash text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);

-- Sessions are stored under the SHA-256 of their token; the token is never stored.
CREATE TABLE sessions (
    token_hash   bytea PRIMARY KEY,
    agent_id     bigint NOT NULL REFERENCES agents (id),
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_seen_at timestamptz
);
CREATE INDEX sessions_agent ON sessions (agent_id);

-- ---- routing --------------------------------------------------------------

CREATE TABLE queues (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                    text COLLATE "C" NOT NULL UNIQUE,
    strategy                text NOT NULL
        CHECK (strategy IN ('ring_all', 'round_robin', 'longest_idle', 'fewest_active')),
    offer_timeout_secs      integer NOT NULL CHECK (offer_timeout_secs >= 0),
    sticky_secs             integer NOT NULL CHECK (sticky_secs >= 0),
    retry_backoff_secs      integer NOT NULL CHECK (retry_backoff_secs >= 0),
    max_simultaneous_offers integer CHECK (max_simultaneous_offers >= 0),
    auto_pause_after_missed integer CHECK (auto_pause_after_missed >= 0),
    disposition_required    boolean NOT NULL DEFAULT false,
    -- round_robin: the agent who received this queue's previous offer, so that
    -- the rotation survives a restart or a takeover by another node.
    rr_last_agent_id        bigint REFERENCES agents (id),
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    deleted_at              timestamptz
);

CREATE TABLE queue_members (
    queue_id bigint NOT NULL REFERENCES queues (id),
    agent_id bigint NOT NULL REFERENCES agents (id),
    PRIMARY KEY (queue_id, agent_id)
);
CREATE INDEX queue_members_agent ON queue_members (agent_id);

-- ---- mail accounts --------------------------------------------------------

CREATE TABLE accounts (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key                       text COLLATE "C" NOT NULL UNIQUE,
    address                   text NOT NULL,
    queue_id                  bigint NOT NULL REFERENCES queues (id),
    imap_host                 text NOT NULL,
    imap_port                 integer NOT NULL CHECK (imap_port BETWEEN 0 AND 65535),
    imap_tls                  text NOT NULL CHECK (imap_tls IN ('none', 'starttls', 'tls')),
    imap_username             text NOT NULL,
    -- Stored as given: the mailbox must log in with it. Never returned by the API.
    imap_password             text NOT NULL DEFAULT '',
    imap_folder               text NOT NULL,
    imap_accept_invalid_certs boolean NOT NULL DEFAULT false,
    imap_poll_secs            integer NOT NULL CHECK (imap_poll_secs >= 0),
    imap_sent_folder          text,
    smtp_host                 text NOT NULL,
    smtp_port                 integer NOT NULL CHECK (smtp_port BETWEEN 0 AND 65535),
    smtp_tls                  text NOT NULL CHECK (smtp_tls IN ('none', 'starttls', 'tls')),
    smtp_username             text NOT NULL,
    smtp_password             text NOT NULL DEFAULT '',
    smtp_accept_invalid_certs boolean NOT NULL DEFAULT false,
    -- The first sync imports mail whose INTERNALDATE is at or after this.
    import_since              timestamptz NOT NULL,
    subject_token             boolean NOT NULL DEFAULT true,
    allow_mark_unread         boolean NOT NULL DEFAULT true,
    show_preview              boolean NOT NULL DEFAULT true,
    max_attachment_bytes      bigint NOT NULL CHECK (max_attachment_bytes >= 0),
    max_mail_bytes            bigint NOT NULL CHECK (max_mail_bytes >= 0),
    signature                 text,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    deleted_at                timestamptz
);
CREATE INDEX accounts_queue ON accounts (queue_id);

-- The UID watermark of a mailbox. It advances in the same transaction that
-- commits the mail it covers (invariant 1).
CREATE TABLE mailbox_state (
    account_id  bigint PRIMARY KEY REFERENCES accounts (id),
    uidvalidity bigint NOT NULL,
    last_uid    bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- ---- contacts -------------------------------------------------------------

CREATE TABLE contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_name  text,
    last_name   text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- Set when this contact was merged into another; lookups follow it.
    merged_into bigint REFERENCES contacts (id)
);

CREATE TABLE contact_emails (
    -- Lower-cased by the writer (EmailAddress::key), so that lookups are exact.
    email      text COLLATE "C" PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id),
    created_at timestamptz NOT NULL
);
CREATE INDEX contact_emails_contact ON contact_emails (contact_id);

-- ---- admin-defined vocabularies ------------------------------------------

CREATE TABLE substatuses (
    name       text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL
);
INSERT INTO substatuses (name, created_at) VALUES ('Pending', now());

CREATE TABLE tags (
    name       text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL
);

-- A tree of 1 to 3 levels. Interactions keep the chosen path by name (json), so
-- renaming or deleting a node never rewrites history.
CREATE TABLE dispositions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_id  bigint REFERENCES dispositions (id) ON DELETE CASCADE,
    name       text COLLATE "C" NOT NULL,
    level      integer NOT NULL CHECK (level BETWEEN 1 AND 3),
    created_at timestamptz NOT NULL,
    CHECK ((parent_id IS NULL) = (level = 1))
);
-- UNIQUE (parent_id, name) would let two roots share a name (NULLs are distinct),
-- so roots and children get one partial index each (portable to SQLite).
CREATE UNIQUE INDEX dispositions_root_name ON dispositions (name) WHERE parent_id IS NULL;
CREATE UNIQUE INDEX dispositions_child_name ON dispositions (parent_id, name) WHERE parent_id IS NOT NULL;

CREATE TABLE canned_answers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title      text NOT NULL,
    body_text  text NOT NULL,
    body_html  text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- ---- interactions and messages ---------------------------------------------

CREATE TABLE interactions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id             bigint NOT NULL REFERENCES accounts (id),
    queue_id               bigint NOT NULL REFERENCES queues (id),
    subject                text NOT NULL,
    status                 text NOT NULL CHECK (status IN ('open', 'closed', 'closed_unmanaged')),
    -- Cleared when the customer replies; deleting a substatus clears it here.
    substatus              text COLLATE "C" REFERENCES substatuses (name) ON UPDATE CASCADE ON DELETE SET NULL,
    owner_id               bigint REFERENCES agents (id),
    first_agent_id         bigint REFERENCES agents (id),
    contact_id             bigint REFERENCES contacts (id),
    priority               integer NOT NULL DEFAULT 0,
    unread                 boolean NOT NULL DEFAULT false,
    unread_count           integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    reopened               boolean NOT NULL DEFAULT false,
    -- The chosen path, e.g. ["Sales", "Won"]: 1 to 3 names.
    disposition            jsonb CHECK (disposition IS NULL OR jsonb_typeof(disposition) = 'array'),
    continues_id           bigint REFERENCES interactions (id),
    continued_in_id        bigint REFERENCES interactions (id),
    -- Bumped by every change of owner or status; claim compares it (invariant 2).
    version                bigint NOT NULL DEFAULT 1,
    -- When it (last) entered its queue; routing serves priority, then this.
    enqueued_at            timestamptz,
    created_at             timestamptz NOT NULL,
    -- Last activity.
    updated_at             timestamptz NOT NULL,
    closed_at              timestamptz,
    last_message_direction text CHECK (last_message_direction IN ('in', 'out')),
    last_message_at        timestamptz,
    last_message_preview   text,
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX interactions_owner_status ON interactions (owner_id, status);
CREATE INDEX interactions_queue_status_owner ON interactions (queue_id, status, owner_id);
CREATE INDEX interactions_contact ON interactions (contact_id);
CREATE INDEX interactions_account_updated ON interactions (account_id, updated_at);
CREATE INDEX interactions_updated ON interactions (updated_at, id);
CREATE INDEX interactions_created ON interactions (created_at, id);
CREATE INDEX interactions_first_agent ON interactions (first_agent_id);

-- Raw bytes: mail sources and attachment contents, stored once per content.
CREATE TABLE blobs (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256     bytea NOT NULL UNIQUE,
    size       bigint NOT NULL CHECK (size >= 0),
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    interaction_id    bigint NOT NULL REFERENCES interactions (id),
    account_id        bigint NOT NULL REFERENCES accounts (id),
    direction         text NOT NULL CHECK (direction IN ('in', 'out')),
    kind              text NOT NULL CHECK (kind IN ('mail', 'auto_reply', 'note', 'supervisor_note')),
    -- NULL for notes (their author is author_agent_id).
    from_addr         text,
    from_name         text,
    -- json arrays of {"address", "name"?}
    to_addrs          jsonb NOT NULL DEFAULT '[]',
    cc_addrs          jsonb NOT NULL DEFAULT '[]',
    bcc_addrs         jsonb NOT NULL DEFAULT '[]',
    reply_to          text,
    subject           text NOT NULL DEFAULT '',
    text_body         text,
    -- Already sanitised.
    html_body         text,
    message_id_header text,
    in_reply_to       text,
    references_header text,
    -- SHA-256 over From, Date, Subject and the body bytes (invariant 1).
    content_hash      bytea,
    raw_blob_id       bigint REFERENCES blobs (id),
    author_agent_id   bigint REFERENCES agents (id),
    for_agent_id      bigint REFERENCES agents (id),
    -- Outgoing mail only: the outbox state, mirrored here for the API.
    delivery          text CHECK (delivery IN ('queued', 'sent', 'failed')),
    delivery_error    text,
    created_at        timestamptz NOT NULL
);
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
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: an upload not yet used in a message.
    message_row_id bigint REFERENCES messages (id),
    blob_id        bigint NOT NULL REFERENCES blobs (id),
    filename       text NOT NULL,
    content_type   text NOT NULL,
    size           bigint NOT NULL CHECK (size >= 0),
    content_id     text,
    is_inline      boolean NOT NULL DEFAULT false,
    uploaded_by    bigint REFERENCES agents (id),
    created_at     timestamptz NOT NULL
);
CREATE INDEX attachments_message ON attachments (message_row_id);
CREATE INDEX attachments_blob ON attachments (blob_id);

-- ---- ingest bookkeeping -----------------------------------------------------

-- A mail that could not be parsed or was too large: kept raw, never blocking.
CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  bigint NOT NULL REFERENCES accounts (id),
    uidvalidity bigint,
    uid         bigint,
    blob_id     bigint NOT NULL REFERENCES blobs (id),
    reason      text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX quarantine_account ON quarantine (account_id, resolved_at);

-- One row per IMAP message ever ingested: what makes ingest idempotent on
-- (account, uidvalidity, uid) (invariant 1).
CREATE TABLE mail_receipts (
    account_id     bigint NOT NULL REFERENCES accounts (id),
    uidvalidity    bigint NOT NULL,
    uid            bigint NOT NULL,
    message_row_id bigint REFERENCES messages (id),
    quarantine_id  bigint REFERENCES quarantine (id),
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (account_id, uidvalidity, uid)
);

-- ---- offers, drafts, tags --------------------------------------------------

CREATE TABLE offers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    interaction_id bigint NOT NULL REFERENCES interactions (id),
    queue_id       bigint NOT NULL REFERENCES queues (id),
    agent_id       bigint NOT NULL REFERENCES agents (id),
    status         text NOT NULL
        CHECK (status IN ('offered', 'accepted', 'rejected', 'expired', 'rescinded')),
    reason         text CHECK (reason IN ('taken', 'timeout', 'cancelled')),
    offered_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    decided_at     timestamptz,
    CHECK ((status = 'offered') = (decided_at IS NULL))
);
CREATE INDEX offers_interaction ON offers (interaction_id);
CREATE INDEX offers_agent_status ON offers (agent_id, status);
CREATE INDEX offers_status ON offers (status, expires_at);
-- At most one live offer per agent and interaction.
CREATE UNIQUE INDEX offers_live ON offers (interaction_id, agent_id) WHERE status = 'offered';

-- One draft per interaction, owned by the agent who saved it.
CREATE TABLE drafts (
    interaction_id bigint PRIMARY KEY REFERENCES interactions (id),
    agent_id       bigint NOT NULL REFERENCES agents (id),
    mode           text NOT NULL CHECK (mode IN ('reply', 'reply_all', 'forward')),
    to_addrs       jsonb NOT NULL DEFAULT '[]',
    cc_addrs       jsonb NOT NULL DEFAULT '[]',
    bcc_addrs      jsonb NOT NULL DEFAULT '[]',
    subject        text NOT NULL DEFAULT '',
    text_body      text,
    html_body      text,
    -- json array of attachment ids
    attachments    jsonb NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX drafts_agent ON drafts (agent_id);

CREATE TABLE interaction_tags (
    interaction_id bigint NOT NULL REFERENCES interactions (id),
    tag            text COLLATE "C" NOT NULL REFERENCES tags (name) ON UPDATE CASCADE ON DELETE CASCADE,
    PRIMARY KEY (interaction_id, tag)
);
CREATE INDEX interaction_tags_tag ON interaction_tags (tag, interaction_id);

-- ---- outgoing mail ----------------------------------------------------------

-- Invariant 4: an outgoing mail is committed here first, then sent.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_row_id  bigint NOT NULL UNIQUE REFERENCES messages (id),
    account_id      bigint NOT NULL REFERENCES accounts (id),
    status          text NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_account ON outbox (account_id, status);

-- ---- audit ------------------------------------------------------------------

-- Admin changes: who changed what, when.
CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL,
    agent_id bigint REFERENCES agents (id),
    action   text NOT NULL,
    target   text NOT NULL,
    details  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
