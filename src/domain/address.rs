//! Email addresses, built only by [`EmailAddress::parse`] ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A syntactically plausible `local@domain` address, stored lower-cased in the
/// domain part (local parts are case-sensitive by RFC 5321, but every mail
/// system we meet treats them case-insensitively; we keep the local part as
/// given and compare with [`EmailAddress::key`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an email address cannot be empty")]
    Empty,
    #[error("`{0}` is not an email address (expected local@domain)")]
    Invalid(String),
}

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let invalid = || AddressError::Invalid(s.to_string());
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || local.len() > 64
            || domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
            || domain.contains('@')
            || s.contains(['<', '>', ',', ';'])
        {
            return Err(invalid());
        }
        Ok(EmailAddress(format!(
            "{local}@{}",
            domain.to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for lookups and uniqueness (fully lower-cased).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.0)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_the_domain() {
        let a = EmailAddress::parse(" Alice.Doe+tag@Example.TEST ").unwrap();
        assert_eq!(a.as_str(), "Alice.Doe+tag@example.test");
        assert_eq!(a.key(), "alice.doe+tag@example.test");
        assert_eq!(a.domain(), "example.test");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for bad in [
            "",
            "  ",
            "alice",
            "@example.test",
            "alice@",
            "a b@x.test",
            "a@x..test",
            "a@.x.test",
            "<a@x.test>",
            "a@x.test,b@x.test",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_roundtrips(s in ".{0,300}") {
            if let Ok(a) = EmailAddress::parse(&s) {
                let again = EmailAddress::parse(a.as_str()).unwrap();
                prop_assert_eq!(again, a);
            }
        }
    }
}
