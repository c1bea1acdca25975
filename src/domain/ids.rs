//! Typed ids. Every entity id is an `i64` in the store (a Postgres identity
//! column or an SQLite rowid) and an **opaque string** in JSON, as the contract
//! says. A newtype per entity means an `AgentId` can never be passed where an
//! `InteractionId` is expected, and there is no sentinel value: "no owner" is
//! `Option<AgentId>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                s.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map($name)
                    .ok_or(InvalidId)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Accept the string form (the contract) and, leniently, a bare
                // number: integrators' tools sometimes send either.
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    S(String),
                    N(i64),
                }
                match Raw::deserialize(d)? {
                    Raw::S(s) => s.parse().map_err(|_| serde::de::Error::custom(concat!("invalid ", stringify!($name)))),
                    Raw::N(n) if n > 0 => Ok($name(n)),
                    Raw::N(_) => Err(serde::de::Error::custom(concat!("invalid ", stringify!($name)))),
                }
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some("opaque id"))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

/// Serialise a raw numeric id as the contract's opaque string (for ids that
/// have no newtype yet, e.g. quarantine entries).
pub fn serialize_as_string<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// The string was not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

id_type!(
    /// An agent, supervisor or admin.
    AgentId
);
id_type!(
    /// A routing queue.
    QueueId
);
id_type!(
    /// A configured mail account.
    AccountId
);
id_type!(
    /// A thread of mail: the unit of work routed to an agent.
    InteractionId
);
id_type!(
    /// One mail or note in an interaction.
    MessageId
);
id_type!(
    /// A customer.
    ContactId
);
id_type!(
    /// One notification to one agent about one interaction.
    OfferId
);
id_type!(
    /// A stored file: an attachment of a message or an upload.
    AttachmentId
);
id_type!(
    /// Raw bytes (a mail's source, an attachment's content).
    BlobId
);
id_type!(
    /// A node of the disposition tree.
    DispositionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strings_in_json() {
        let id = InteractionId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
        let back: InteractionId = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(back, id);
        let lenient: InteractionId = serde_json::from_str("42").unwrap();
        assert_eq!(lenient, id);
    }

    #[test]
    fn zero_negative_and_garbage_are_rejected() {
        assert!("0".parse::<AgentId>().is_err());
        assert!("-3".parse::<AgentId>().is_err());
        assert!("abc".parse::<AgentId>().is_err());
        assert!(serde_json::from_str::<AgentId>("\"x1\"").is_err());
        assert!(serde_json::from_str::<AgentId>("0").is_err());
    }
}
