//! Reply matching (DESIGN.md, "Threads"): which interaction an incoming mail
//! continues. Pure: the store resolves what this finds, in the order
//! of DESIGN.md and always scoped to the account:
//!
//! 1. [`ReplyRefs::ours`]: interactions named by **our own signed
//!    Message-IDs** in In-Reply-To / References ([`MessageIdSigner`]);
//! 2. [`ReplyRefs::message_ids`]: every In-Reply-To / References id, to look
//!    up among stored messages;
//! 3. [`ReplyRefs::subject_token`]: a `[SERV#123]` token in the subject.
//!
//! Also here: the subject helpers for outgoing mail ([`add_subject_token`],
//! [`reply_subject`], [`forward_subject`]) and [`split_display_name`] for
//! contacts.

use std::collections::HashSet;
use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::InteractionId;
use crate::mail::ParsedMail;

type HmacSha256 = Hmac<Sha256>;

/// Makes and checks the Message-IDs of our outgoing mail, so that a reply
/// naming one can be matched to its interaction without trusting the sender:
/// a forged or altered id fails [`verify`](Self::verify).
///
/// Format (the local part is all lower-case, because some servers lower-case
/// Message-IDs; [`verify`](Self::verify) lower-cases its input first):
///
/// ```text
/// mr.<account key>.<interaction id>.<nonce>.<mac>@<domain>
/// nonce = 16 hex digits (64 random bits: unique per call)
/// mac   = first 16 bytes of HMAC-SHA256(secret,
///           "mailroom.msgid.v1" 0 key 0 id 0 nonce 0 domain), 32 hex digits
/// ```
///
/// e.g. `mr.serv.123.9f2c4e1a0b7d3e55.5d0c…e1@example.test`: a dot-atom on
/// both sides, so a valid RFC 5322 msg-id. The domain is covered by the MAC,
/// so every character of the id is authenticated (up to case).
#[derive(Clone)]
pub struct MessageIdSigner {
    key: Vec<u8>,
}

/// The signing secret was unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    #[error(
        "the Message-ID signing secret must be at least {min} bytes (got {got}); \
         use 32 random bytes"
    )]
    KeyTooShort { got: usize, min: usize },
}

const MAC_BYTES: usize = 16;
const NONCE_HEX: usize = 16;
const PREFIX: &str = "mr";

impl fmt::Debug for MessageIdSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessageIdSigner(<redacted>)")
    }
}

impl MessageIdSigner {
    pub const MIN_KEY_LEN: usize = 32;

    pub fn new(secret: &[u8]) -> Result<Self, SignerError> {
        if secret.len() < Self::MIN_KEY_LEN {
            return Err(SignerError::KeyTooShort {
                got: secret.len(),
                min: Self::MIN_KEY_LEN,
            });
        }
        Ok(MessageIdSigner {
            key: secret.to_vec(),
        })
    }

    /// A new Message-ID (without angle brackets) for a mail of `interaction`
    /// sent from the account `account_key` (1–5 letters or digits, as the
    /// config enforces; other characters are dropped). `domain` is the
    /// account address's domain; one that is not an ASCII dot-atom is
    /// replaced by `mailroom.invalid` so the id stays valid.
    pub fn make(&self, account_key: &str, interaction: InteractionId, domain: &str) -> String {
        let key: String = account_key
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let domain = domain.trim().to_ascii_lowercase();
        let domain = if is_dot_atom(&domain) {
            domain
        } else {
            "mailroom.invalid".to_string()
        };
        let mut nonce = [0u8; NONCE_HEX / 2];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = hex(&nonce);
        let id = interaction.get().to_string();
        let mac = hex(&self.mac(&key, &id, &nonce, &domain)[..MAC_BYTES]);
        format!("{PREFIX}.{key}.{id}.{nonce}.{mac}@{domain}")
    }

    /// The account key (upper-case) and interaction named by one of our
    /// Message-IDs, or `None` if `msg_id` is not one or was altered.
    /// Accepts the id with or without angle brackets, in any case.
    pub fn verify(&self, msg_id: &str) -> Option<(String, InteractionId)> {
        let id = msg_id.trim();
        let id = id.strip_prefix('<').unwrap_or(id);
        let id = id.strip_suffix('>').unwrap_or(id).to_ascii_lowercase();
        let (local, domain) = id.rsplit_once('@')?;
        let mut fields = local.split('.');
        let (prefix, key, number, nonce, mac) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if fields.next().is_some()
            || prefix != PREFIX
            || key.is_empty()
            || key.len() > 16
            || !key.bytes().all(|b| b.is_ascii_alphanumeric())
            || nonce.len() != NONCE_HEX
            || !is_dot_atom(domain)
        {
            return None;
        }
        let interaction: InteractionId = number.parse().ok()?;
        let claimed = unhex(mac)?;
        if claimed.len() != MAC_BYTES {
            return None;
        }
        let m = self.hmac(key, number, nonce, domain);
        // `verify_truncated_left` compares in constant time.
        m.verify_truncated_left(&claimed).ok()?;
        Some((key.to_ascii_uppercase(), interaction))
    }

    fn hmac(&self, key: &str, id: &str, nonce: &str, domain: &str) -> HmacSha256 {
        // HMAC accepts keys of any length, and `new` checked ours is ≥ 32
        // bytes: this cannot fail.
        #[allow(clippy::expect_used)]
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for (i, part) in ["mailroom.msgid.v1", key, id, nonce, domain]
            .iter()
            .enumerate()
        {
            if i > 0 {
                m.update(&[0]);
            }
            m.update(part.as_bytes());
        }
        m
    }

    fn mac(&self, key: &str, id: &str, nonce: &str, domain: &str) -> [u8; 32] {
        self.hmac(key, id, nonce, domain)
            .finalize()
            .into_bytes()
            .into()
    }
}

/// `atext` runs separated by single dots (RFC 5322 dot-atom), ASCII only.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What an incoming mail says about the thread it continues. The store
/// resolves these in order — `ours`, then `message_ids`, then
/// `subject_token` — scoped to the account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplyRefs {
    /// Interactions named by our own verified Message-IDs for this account,
    /// newest reference first (In-Reply-To, then References from the end).
    pub ours: Vec<InteractionId>,
    /// Every In-Reply-To then References id, newest reference first,
    /// without duplicates.
    pub message_ids: Vec<String>,
    /// The interaction named by a `[KEY#123]` token in the subject.
    pub subject_token: Option<InteractionId>,
}

pub fn reply_refs(mail: &ParsedMail, signer: &MessageIdSigner, account_key: &str) -> ReplyRefs {
    let mut seen = HashSet::new();
    let message_ids: Vec<String> = mail
        .in_reply_to
        .iter()
        .chain(mail.references.iter().rev())
        .filter(|id| seen.insert(id.as_str()))
        .cloned()
        .collect();
    let mut ours = Vec::new();
    for id in &message_ids {
        if let Some((key, interaction)) = signer.verify(id)
            && key.eq_ignore_ascii_case(account_key)
            && !ours.contains(&interaction)
        {
            ours.push(interaction);
        }
    }
    ReplyRefs {
        ours,
        message_ids,
        subject_token: subject_token(&mail.subject, account_key),
    }
}

/// A `[KEY#123]` token found in a subject: its byte range and interaction.
struct Token {
    start: usize,
    end: usize,
    id: InteractionId,
}

/// Every well-formed token of `account_key` in `subject`. The match is
/// case-insensitive on the key and tolerates spaces inside the brackets
/// (`[ serv # 123 ]`), since people retype tokens and some clients re-wrap
/// subjects; the key must match exactly otherwise (`[SERVX#1]` is not SERV's).
fn tokens(subject: &str, account_key: &str) -> Vec<Token> {
    let key = account_key.trim();
    let mut found = Vec::new();
    if key.is_empty() {
        return found;
    }
    let bytes = subject.as_bytes();
    let skip_spaces = |mut i: usize| {
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    };
    for (start, _) in subject.match_indices('[') {
        let mut i = skip_spaces(start + 1);
        let Some(candidate) = bytes.get(i..i + key.len()) else {
            continue;
        };
        if !candidate.eq_ignore_ascii_case(key.as_bytes()) {
            continue;
        }
        i = skip_spaces(i + key.len());
        if bytes.get(i) != Some(&b'#') {
            continue;
        }
        i = skip_spaces(i + 1);
        let digits_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        // An i64 has at most 19 digits.
        if i == digits_start || i - digits_start > 19 {
            continue;
        }
        let digits = &subject[digits_start..i];
        i = skip_spaces(i);
        if bytes.get(i) != Some(&b']') {
            continue;
        }
        if let Ok(id) = digits.parse() {
            found.push(Token {
                start,
                end: i + 1,
                id,
            });
        }
    }
    found
}

/// The interaction named by the first `[KEY#123]` token of `account_key` in
/// `subject` (see [`tokens`] for what is tolerated).
pub fn subject_token(subject: &str, account_key: &str) -> Option<InteractionId> {
    tokens(subject, account_key).first().map(|t| t.id)
}

/// `subject` carrying the token `[KEY#id]` exactly once. Unchanged if it
/// already names `id`; a token of the same key naming another interaction
/// (the subject of thread 1 in thread 2) is replaced; otherwise the token
/// goes after any `Re:`/`Fwd:` prefixes: `Re: [SERV#12] Help`.
pub fn add_subject_token(subject: &str, account_key: &str, interaction: InteractionId) -> String {
    let token = format!("[{}#{}]", account_key.trim(), interaction);
    let found = tokens(subject, account_key);
    if found.iter().any(|t| t.id == interaction) {
        return subject.to_string();
    }
    if let Some(t) = found.first() {
        return format!("{}{}{}", &subject[..t.start], token, &subject[t.end..]);
    }
    let rest = strip_prefixes(subject, &[REPLY_PREFIXES, FORWARD_PREFIXES]);
    let head = subject[..subject.len() - rest.len()].trim_end();
    match (head.is_empty(), rest.is_empty()) {
        (true, true) => token,
        (true, false) => format!("{token} {rest}"),
        (false, true) => format!("{head} {token}"),
        (false, false) => format!("{head} {token} {rest}"),
    }
}

/// Reply prefixes in the languages mail clients localise them to.
const REPLY_PREFIXES: &[&str] = &[
    "re", "aw", "antw", "antwort", "sv", "odp", "ynt", "res", "rif", "atb", "vá", "回复", "回覆",
    "答复",
];

/// Forward prefixes.
const FORWARD_PREFIXES: &[&str] = &[
    "fwd",
    "fw",
    "wg",
    "tr",
    "rv",
    "enc",
    "doorst",
    "vb",
    "vl",
    "pd",
    "továbbítás",
    "转发",
    "轉寄",
];

/// `subject` without its leading prefixes from `lists`: a prefix word
/// (case-insensitive), an optional counter (`Re[2]:`, `Re(2):`, `Re^2:`),
/// optional spaces, then `:` or the full-width `：`.
fn strip_prefixes<'s>(subject: &'s str, lists: &[&[&str]]) -> &'s str {
    let mut rest = subject.trim_start();
    'strip: loop {
        for prefix in lists.iter().flat_map(|l| l.iter()) {
            if let Some(after) = strip_prefix_word(rest, prefix) {
                rest = after.trim_start();
                continue 'strip;
            }
        }
        return rest;
    }
}

fn strip_prefix_word<'s>(s: &'s str, word: &str) -> Option<&'s str> {
    let head = s.get(..word.len())?;
    if head.to_lowercase() != word {
        return None;
    }
    let mut rest = &s[word.len()..];
    // A counter: "[2]", "(2)" or "^2".
    for (open, close) in [('[', Some(']')), ('(', Some(')')), ('^', None)] {
        if let Some(after) = rest.strip_prefix(open) {
            let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits > 0 {
                let after = &after[digits..];
                rest = match close {
                    Some(c) => after.strip_prefix(c)?,
                    None => after,
                };
            }
            break;
        }
    }
    let rest = rest.trim_start_matches(' ');
    rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
}

/// The subject of a reply: exactly one `Re: ` in front. Leading reply
/// prefixes (Re, RE, Aw, Sv, Antw, …, with counters) are replaced, so
/// replying again never stacks `Re: Re:`; a forward prefix is kept, as mail
/// clients do (`Re: Fwd: offer`). Idempotent.
pub fn reply_subject(subject: &str) -> String {
    let rest = strip_prefixes(subject, &[REPLY_PREFIXES]).trim_end();
    if rest.is_empty() {
        "Re:".to_string()
    } else {
        format!("Re: {rest}")
    }
}

/// The subject of a forward: exactly one `Fwd: ` in front (Fwd, FW, WG, TR…
/// replaced; a reply prefix is kept: `Fwd: Re: offer`). Idempotent.
pub fn forward_subject(subject: &str) -> String {
    let rest = strip_prefixes(subject, &[FORWARD_PREFIXES]).trim_end();
    if rest.is_empty() {
        "Fwd:".to_string()
    } else {
        format!("Fwd: {rest}")
    }
}

/// Name suffixes that follow a comma without making it "Last, First".
const SUFFIXES: &[&str] = &["jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"];

/// Lower-case particles that belong to the last name ("Ludwig van Beethoven").
const PARTICLES: &[&str] = &[
    "van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "la", "le", "ten", "ter",
    "dos", "das",
];

/// First and last name for a contact, from a display name:
///
/// - `Doe, Jane` → (`Jane`, `Doe`) — the directory form Outlook sends;
/// - `Jane Q. Doe` → (`Jane Q.`, `Doe`); `Ludwig van Beethoven` →
///   (`Ludwig`, `van Beethoven`); `Jane Doe, Jr.` → (`Jane`, `Doe Jr.`);
/// - quotes, a trailing `(comment)` and extra spaces are removed;
/// - one word → (`word`, ``);
/// - no name, an empty one, or one that is an address → (local part of
///   `address`, ``).
pub fn split_display_name(name: Option<&str>, address: &str) -> (String, String) {
    let local = address
        .rsplit_once('@')
        .map_or(address, |(local, _)| local)
        .trim()
        .to_string();
    let Some(name) = name
        .map(tidy_name)
        .filter(|n| !n.is_empty() && !n.contains('@'))
    else {
        return (local, String::new());
    };

    let (name, suffix, comma_last) = match name.split_once(',') {
        Some((before, after)) => {
            let (before, after) = (before.trim(), after.trim());
            let bare = after.trim_end_matches('.').to_ascii_lowercase();
            if SUFFIXES.contains(&bare.as_str()) {
                (before.to_string(), Some(after.to_string()), None)
            } else if after.is_empty() {
                (before.to_string(), None, None)
            } else if before.is_empty() {
                (after.to_string(), None, None)
            } else {
                (after.to_string(), None, Some(before.to_string()))
            }
        }
        None => (name, None, None),
    };
    if let Some(last) = comma_last {
        return (name, last);
    }

    let words: Vec<&str> = name.split_whitespace().collect();
    let (first, mut last) = match words.as_slice() {
        [] => (local, String::new()),
        [only] => (only.to_string(), String::new()),
        [.., _] => {
            let mut split = words.len() - 1;
            while split > 1 && PARTICLES.contains(&words[split - 1]) {
                split -= 1;
            }
            (words[..split].join(" "), words[split..].join(" "))
        }
    };
    if let Some(suffix) = suffix {
        last = if last.is_empty() {
            suffix
        } else {
            format!("{last} {suffix}")
        };
    }
    (first, last)
}

/// Quotes, a trailing `(comment)`, control characters and extra spaces gone.
fn tidy_name(name: &str) -> String {
    let mut n = name.trim();
    loop {
        let before = n;
        for (open, close) in [('"', '"'), ('\'', '\''), ('<', '>'), ('“', '”')] {
            if let Some(inner) = n.strip_prefix(open).and_then(|s| s.strip_suffix(close)) {
                n = inner.trim();
            }
        }
        if let Some(open) = n.rfind('(')
            && n.ends_with(')')
            && open > 0
        {
            n = n[..open].trim();
        }
        if n == before {
            break;
        }
    }
    n.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests;
