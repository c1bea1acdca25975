//! The enums of the product. Each is stored as its `snake_case` name in a TEXT
//! column (readable in reporting queries) and serialised the same way in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Defines a string-backed enum with `as_str`, `FromStr`, `Display` and the
/// list of valid names (used in error messages that list what is allowed).
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: stringify!($name),
                        got: s.to_string(),
                        valid: Self::NAMES,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A name that is not one of an enum's values; the message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{got}` is not a valid {what} (valid: {})", valid.join(", "))]
pub struct UnknownName {
    pub what: &'static str,
    pub got: String,
    pub valid: &'static [&'static str],
}

named_enum!(
    /// What a user may do. Ordered: an admin can do what a supervisor can.
    Role {
        Agent = "agent",
        Supervisor = "supervisor",
        Admin = "admin",
    }
);

impl Role {
    fn rank(self) -> u8 {
        match self {
            Role::Agent => 0,
            Role::Supervisor => 1,
            Role::Admin => 2,
        }
    }

    /// True when this role has at least the rights of `other`.
    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }
}

named_enum!(
    /// How a queue picks the agents it offers an interaction to.
    Strategy {
        /// Offer to every eligible agent at once; the first accept wins.
        RingAll = "ring_all",
        /// One agent at a time, continuing after the last one offered.
        RoundRobin = "round_robin",
        /// One agent at a time, the one idle the longest first.
        LongestIdle = "longest_idle",
        /// One agent at a time, the one owning the fewest open interactions first.
        FewestActive = "fewest_active",
    }
);

named_enum!(
    /// Transport security for IMAP and SMTP.
    TlsMode {
        None = "none",
        Starttls = "starttls",
        Tls = "tls",
    }
);

named_enum!(
    /// The life of an interaction.
    InteractionStatus {
        Open = "open",
        Closed = "closed",
        /// Closed without ever having been accepted by an agent.
        ClosedUnmanaged = "closed_unmanaged",
    }
);

named_enum!(
    /// Which way a message went.
    Direction {
        In = "in",
        Out = "out",
    }
);

named_enum!(
    /// What a message is. Notes and auto-replies never count as the last message.
    MessageKind {
        Mail = "mail",
        AutoReply = "auto_reply",
        Note = "note",
        SupervisorNote = "supervisor_note",
    }
);

named_enum!(
    /// Delivery state of an outgoing message (the outbox).
    Delivery {
        Queued = "queued",
        Sent = "sent",
        Failed = "failed",
    }
);

named_enum!(
    /// The life of one offer: `offered` → one of the four outcomes.
    OfferStatus {
        Offered = "offered",
        Accepted = "accepted",
        Rejected = "rejected",
        Expired = "expired",
        /// Taken by another agent, or cancelled (pause, disconnect, restart).
        Rescinded = "rescinded",
    }
);

named_enum!(
    /// Why an offer was withdrawn; the `reason` of an `offer_rescinded` frame.
    RescindReason {
        Taken = "taken",
        Timeout = "timeout",
        Cancelled = "cancelled",
    }
);

named_enum!(
    /// What an agent chose to be; `offline` is derived from having no live socket.
    PresenceStatus {
        Online = "online",
        Paused = "paused",
        Offline = "offline",
    }
);

named_enum!(
    /// How an interaction came to its owner; the `via` of an `assigned` frame.
    AssignedVia {
        Accept = "accept",
        Transfer = "transfer",
        Reopen = "reopen",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "beepall".parse::<Strategy>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("beepall"), "{msg}");
        assert!(
            msg.contains("ring_all, round_robin, longest_idle, fewest_active"),
            "{msg}"
        );
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.at_least(Role::Supervisor));
        assert!(Role::Supervisor.at_least(Role::Agent));
        assert!(!Role::Agent.at_least(Role::Supervisor));
        assert!(!Role::Supervisor.at_least(Role::Admin));
    }
}
