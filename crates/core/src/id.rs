//! Identifiers: [`LoanId`] and [`EventId`] (UUIDs, on the wire as lowercase hyphenated strings)
//! and [`Seq`] (a loan's event position, from 1, on the wire as a JSON number).
//!
//! Distinct types so a loan id cannot be passed where an event id is meant; each is exactly its
//! representation (`#[repr(transparent)]`), so converting at a boundary costs nothing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAUuid;

impl fmt::Display for NotAUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "is not a UUID")
    }
}

impl std::error::Error for NotAUuid {}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub const fn uuid(self) -> Uuid {
                self.0
            }
            /// The 16 bytes the binary formats store.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                $name(u)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = NotAUuid;
            fn from_str(s: &str) -> Result<Self, NotAUuid> {
                Uuid::parse_str(s).map($name).map_err(|_| NotAUuid)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Uuid::deserialize(d).map($name)
            }
        }
    };
}

uuid_id!(
    /// A loan's id (`loan_id`).
    LoanId
);
uuid_id!(
    /// An event's id (`event_id`): the idempotency key of an append.
    EventId
);

/// A loan's event position (`seq`): 1 for the disbursement, then one more per stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The position of a loan's first event.
    pub const FIRST: Seq = Seq(1);
    pub const fn get(self) -> u64 {
        self.0
    }
    /// The position after this one.
    pub const fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl From<u64> for Seq {
    fn from(n: u64) -> Self {
        Seq(n)
    }
}

impl From<Seq> for u64 {
    fn from(s: Seq) -> u64 {
        s.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Seq {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Seq)
    }
}

impl Serialize for Seq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_wire_form() {
        let s = "6f1c2a0e-0000-4000-8000-00000000000a";
        let loan: LoanId = s.parse().unwrap();
        assert_eq!(loan.to_string(), s);
        assert_eq!(serde_json::to_string(&loan).unwrap(), format!("\"{s}\""));
        let back: EventId = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(back.uuid(), loan.uuid());
        assert_eq!("not-a-uuid".parse::<LoanId>(), Err(NotAUuid));
        assert!(serde_json::from_str::<LoanId>("\"x\"").is_err());
    }

    #[test]
    fn seq_is_a_number() {
        assert_eq!(serde_json::to_string(&Seq(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Seq>("7").unwrap(), Seq(7));
        assert!(serde_json::from_str::<Seq>("\"7\"").is_err());
        assert_eq!(Seq::FIRST.next(), Seq(2));
        assert!(Seq(2) > Seq::FIRST);
        assert_eq!("12".parse::<Seq>().unwrap().to_string(), "12");
    }
}
