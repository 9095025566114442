//! Names of venues, stations, sensors and regions.
//!
//! Every one of them ends up as a level of an MQTT topic, so they share one
//! rule that keeps topics parseable and unambiguous: 1 to 64 characters of
//! ASCII letters, digits, `-` and `_`. That rules out `/`, `+`, `#`, spaces and
//! anything a broker or a file name could misread. The kind of name is a type
//! parameter, so a station id can never be passed where a venue id is meant.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Longest name accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Marker for one kind of name; `NAME` is used in error messages.
pub trait IdKind {
    /// What the name denotes, as a person would say it ("station id").
    const NAME: &'static str;
}

macro_rules! id_kinds {
    ($($(#[$doc:meta])* $marker:ident / $alias:ident = $name:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $marker {}
        impl IdKind for $marker {
            const NAME: &'static str = $name;
        }
        $(#[$doc])*
        pub type $alias = Id<$marker>;
    )*};
}

id_kinds! {
    /// A venue: one internet café, one agent.
    VenueKind / VenueId = "venue id";
    /// A customer workstation, as enrolled.
    StationKind / StationId = "station id";
    /// A safety sensor, as enrolled, bridged by a station.
    SensorKind / SensorId = "sensor id";
    /// The regulator's district code, one topic level above the venue.
    RegionKind / RegionCode = "region code";
}

/// A validated name of kind `K`.
pub struct Id<K> {
    value: String,
    kind: PhantomData<K>,
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The name is empty.
    #[error("{kind} is empty")]
    Empty {
        /// What the name denotes.
        kind: &'static str,
    },
    /// The name is longer than [`MAX_ID_LEN`].
    #[error("{kind} is {length} bytes long, at most {MAX_ID_LEN} allowed")]
    TooLong {
        /// What the name denotes.
        kind: &'static str,
        /// Its length in bytes.
        length: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9_-]`.
    #[error("{kind} holds {found:?} at position {position}; only letters, digits, '-' and '_' are allowed")]
    Character {
        /// What the name denotes.
        kind: &'static str,
        /// The offending character.
        found: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
}

impl<K: IdKind> Id<K> {
    /// Checks `value` against the naming rule.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        check_id(K::NAME, &value)?;
        Ok(Id { value, kind: PhantomData })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// Applies the naming rule to a string without building an [`Id`].
pub fn check_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if let Some((index, found)) = value.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(IdError::Character { kind, found, position: index + 1 });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, length: value.len() });
    }
    Ok(())
}

// The derives would put bounds on `K`, which is never instantiated; these
// hand-written impls only need the string.
impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Id { value: self.value.clone(), kind: PhantomData }
    }
}
impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<K> Eq for Id<K> {}
impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}
impl<K> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", K::NAME, self.value)
    }
}
impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}
impl<K: IdKind> std::str::FromStr for Id<K> {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, IdError> {
        Id::new(value)
    }
}
impl<K> serde::Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}
impl<'de, K: IdKind> serde::Deserialize<'de> for Id<K> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Id::new(value).map_err(serde::de::Error::custom)
    }
}
impl<K: IdKind> schemars::JsonSchema for Id<K> {
    fn schema_name() -> Cow<'static, str> {
        "Id".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_LEN,
            "pattern": "^[A-Za-z0-9_-]+$",
            "description": "A name used as an MQTT topic level: letters, digits, '-' and '_'."
        })
    }
}

/// A venue's code in the Chinese police's systems (GA 557-2005): 14 digits,
/// the 6-digit administrative region (GB/T 2260, so its first two digits
/// name a province), `10` for an internet service venue, and a 6-digit
/// serial. The regulator's ingest keys a venue by it where the venue
/// carries one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GaCode(String);

/// Why a GA 557-2005 venue code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GaCodeError {
    /// Not 14 ASCII digits.
    #[error("a GA 557-2005 venue code is 14 digits; {0:?} is not")]
    Shape(String),
    /// The region's first two digits are no province.
    #[error("venue code {0}: its region {region} does not start with a province code", region = &.0[..6])]
    Province(String),
    /// Digits 7 and 8 are not `10`.
    #[error("venue code {0}: digits 7 and 8 are {kind:?}, not \"10\" (an internet service venue)", kind = &.0[6..8])]
    VenueKind(String),
}

impl GaCode {
    /// Checks `value` against GA 557-2005's shape.
    pub fn new(value: &str) -> Result<GaCode, GaCodeError> {
        if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GaCodeError::Shape(value.to_owned()));
        }
        let digits = value.as_bytes();
        if !crate::identity::cn_province_known((digits[0] - b'0') * 10 + (digits[1] - b'0')) {
            return Err(GaCodeError::Province(value.to_owned()));
        }
        if &value[6..8] != "10" {
            return Err(GaCodeError::VenueKind(value.to_owned()));
        }
        Ok(GaCode(value.to_owned()))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its 6-digit administrative region.
    pub fn region(&self) -> &str {
        &self.0[..6]
    }
}

impl fmt::Display for GaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::str::FromStr for GaCode {
    type Err = GaCodeError;
    fn from_str(value: &str) -> Result<Self, GaCodeError> {
        GaCode::new(value)
    }
}
impl serde::Serialize for GaCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for GaCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        GaCode::new(&value).map_err(serde::de::Error::custom)
    }
}
impl schemars::JsonSchema for GaCode {
    fn schema_name() -> Cow<'static, str> {
        "GaCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]{6}10[0-9]{6}$",
            "description": "The venue's GA 557-2005 code: 6-digit region, 10, 6-digit serial."
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ga_codes() {
        let code = GaCode::new("31010410000042").unwrap();
        assert_eq!((code.as_str(), code.region()), ("31010410000042", "310104"));
        let refused = |input: &str| GaCode::new(input).unwrap_err().to_string();
        assert_eq!(refused("3101041000004"), "a GA 557-2005 venue code is 14 digits; \"3101041000004\" is not");
        assert_eq!(refused("3101041000004x"), "a GA 557-2005 venue code is 14 digits; \"3101041000004x\" is not");
        assert_eq!(refused("３１０１０４10000042"), "a GA 557-2005 venue code is 14 digits; \"３１０１０４10000042\" is not");
        assert_eq!(refused("99010410000042"), "venue code 99010410000042: its region 990104 does not start with a province code");
        assert_eq!(
            refused("31010420000042"),
            "venue code 31010420000042: digits 7 and 8 are \"20\", not \"10\" (an internet service venue)"
        );
        let parsed: Result<GaCode, _> = serde_json::from_str("\"31010420000042\"");
        assert!(parsed.unwrap_err().to_string().contains("digits 7 and 8"));
    }

    use super::*;

    fn check(input: &str, expected: Result<(), &str>) {
        let got = StationId::new(input).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(got.as_ref().map_err(String::as_str).copied(), expected, "input {input:?}");
    }

    #[test]
    fn naming_rule() {
        check("st-017", Ok(()));
        check("A_b-9", Ok(()));
        check(&"a".repeat(64), Ok(()));
        check("", Err("station id is empty"));
        check(&"a".repeat(65), Err("station id is 65 bytes long, at most 64 allowed"));
        check("st/1", Err("station id holds '/' at position 3; only letters, digits, '-' and '_' are allowed"));
        check("+", Err("station id holds '+' at position 1; only letters, digits, '-' and '_' are allowed"));
        check("站1", Err("station id holds '站' at position 1; only letters, digits, '-' and '_' are allowed"));
    }

    #[test]
    fn serde_refuses_bad_names() {
        let error = serde_json::from_str::<VenueId>("\"a b\"").unwrap_err();
        assert!(error.to_string().contains("venue id holds ' '"), "{error}");
        let venue: VenueId = serde_json::from_str("\"sh-0042\"").unwrap();
        assert_eq!(venue.as_str(), "sh-0042");
    }
}
