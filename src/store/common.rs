//! What both backends share so that they behave the same: the clock's
//! precision, range checks on numbers, member lists, and the error texts a
//! caller sees. The contract suite (`tests/it/store.rs`) holds them to it.

use std::collections::BTreeSet;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::{StoreError, StoreResult};

/// Now, at the precision both backends keep: SQLite stores integer
/// milliseconds and Postgres microseconds, so everything written is
/// truncated to milliseconds and reads back exactly as it was written.
pub(crate) fn now() -> DateTime<Utc> {
    millis(Utc::now())
}

/// `t` truncated to whole milliseconds (see [`now`]).
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncation only fails for spans that do not fit in an i64 of
    // nanoseconds (beyond the year 2262); such a time is kept as it is.
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

/// A `u32` setting as a Postgres `integer` (and the same bound on SQLite, so
/// that both refuse the same values).
pub(crate) fn int(value: u32, what: &'static str) -> StoreResult<i32> {
    i32::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is too large: {value}")))
}

pub(crate) fn opt_int(value: Option<u32>, what: &'static str) -> StoreResult<Option<i32>> {
    value.map(|v| int(v, what)).transpose()
}

/// A `u64` size as a `bigint`.
pub(crate) fn bigint(value: u64, what: &'static str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} is too large: {value}")))
}

/// A stored number back into the unsigned type the domain uses. The schema's
/// CHECK constraints keep them in range, so a failure means a damaged row.
pub(crate) fn stored<T: TryFrom<i64>>(value: i64, column: &'static str) -> StoreResult<T> {
    T::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("stored {column} is out of range: {value}")))
}

/// Queue members as given by a spec: each username once, sorted.
pub(crate) fn member_names(agents: &[String]) -> Vec<String> {
    agents
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Replace the generic text of a uniqueness [`StoreError::Conflict`] with one
/// that names what is taken; every other error passes through.
pub(crate) fn taken(message: impl FnOnce() -> String) -> impl FnOnce(StoreError) -> StoreError {
    move |err| match err {
        StoreError::Conflict(_) => StoreError::Conflict(message()),
        other => other,
    }
}

pub(crate) fn agent_taken(username: &str) -> String {
    format!("an agent with username `{username}` already exists")
}

pub(crate) fn queue_taken(name: &str) -> String {
    format!("a queue named `{name}` already exists")
}

pub(crate) fn account_taken(key: &str) -> String {
    format!("an account with key `{key}` already exists")
}

pub(crate) fn unknown_member(username: &str) -> StoreError {
    StoreError::Invalid(format!("queue member `{username}` is not an agent"))
}

pub(crate) fn unknown_queue(name: &str) -> StoreError {
    StoreError::Invalid(format!("there is no queue named `{name}`"))
}

pub(crate) fn key_is_fixed(stored: &str, asked: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the key of an account cannot change (`{stored}` → `{asked}`)"
    ))
}

pub(crate) fn queue_in_use(name: &str, account_keys: &[String]) -> StoreError {
    StoreError::Conflict(format!(
        "queue `{name}` still routes the mail of account(s) {}; move them to another queue first",
        account_keys.join(", ")
    ))
}

/// The kinds of constraint a database can report; both backends classify
/// their native errors into these, so that both answer with the same
/// [`StoreError`] and the same (safe) text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
    Check,
    NotNull,
}

impl Violation {
    pub(crate) fn into_error(self) -> StoreError {
        match self {
            Violation::Unique => {
                StoreError::Conflict("a row with the same unique key already exists".into())
            }
            Violation::ForeignKey => {
                StoreError::Invalid("it refers to something that does not exist".into())
            }
            Violation::Check => StoreError::Invalid("a value is out of the allowed range".into()),
            Violation::NotNull => StoreError::Invalid("a required value is missing".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_has_millisecond_precision() {
        let t = now();
        assert_eq!(t.timestamp_subsec_nanos() % 1_000_000, 0);
    }

    #[test]
    fn members_are_sorted_and_unique() {
        let names = ["bob", "alice", "bob", "Carol"].map(String::from);
        assert_eq!(member_names(&names), ["Carol", "alice", "bob"]);
    }

    #[test]
    fn numbers_out_of_range_are_invalid() {
        assert!(matches!(
            int(u32::MAX, "capacity"),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(int(7, "capacity").ok(), Some(7));
        assert!(matches!(
            bigint(u64::MAX, "size"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            stored::<u32>(-1, "capacity"),
            Err(StoreError::Invalid(_))
        ));
    }
}
