//! Driver options (`--opt DRIVER.KEY=VALUE`) read into a driver's serde
//! config: [`parse_options`] takes the keys under the driver's prefix and
//! deserializes them as the struct's fields, so a config states its keys,
//! defaults and value types once (`#[serde(default, deny_unknown_fields)]`).
//! Values are text: booleans accept `true/yes/1/on` and `false/no/0/off`,
//! numbers parse as decimal, enums by (aliased) variant name, lists split
//! on whitespace; sizes and percentages use [`size`], [`optional_size`] and
//! [`percent`] through `deserialize_with`.

use std::collections::BTreeMap;

use serde::de::value::{Error as DeError, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};

use crate::{parse_size, Error};

/// An option the driver does not know, or a value it does not accept.
#[derive(Debug, thiserror::Error)]
#[error("{driver} option {key}={value:?}: {reason}")]
pub struct OptionError {
    /// The driver reading the options.
    pub driver: &'static str,
    /// The full key (`vfs.reflink`).
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is wrong, or what is accepted.
    pub reason: String,
}

impl OptionError {
    /// An error about `key=value` of `driver`.
    pub fn new(driver: &'static str, key: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            driver,
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<OptionError> for Error {
    fn from(e: OptionError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

/// Reads the `<prefix>.*` keys of `options` into `C`, the fields named
/// without the prefix; other drivers' keys are ignored. An unknown key or a
/// bad value is an [`OptionError`] naming the key, its value and `driver`.
pub fn parse_options<C: DeserializeOwned>(
    driver: &'static str,
    prefix: &str,
    options: &BTreeMap<String, String>,
) -> Result<C, OptionError> {
    let entries: Vec<(&str, &str, &str)> = options
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(prefix)?.strip_prefix('.')?;
            Some((key.as_str(), name, value.as_str()))
        })
        .collect();
    let mut map = Entries {
        entries: &entries,
        next: 0,
    };
    C::deserialize(Options { map: &mut map }).map_err(|e| {
        let (key, value) = match map.next.checked_sub(1).and_then(|i| entries.get(i)) {
            Some((key, _, value)) => (*key, *value),
            None => (prefix, ""),
        };
        OptionError::new(driver, key, value, e.to_string())
    })
}

/// Deserializes a byte count written as a size (`10G`, `512M`, `4096`).
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_size(&text).ok_or_else(|| de::Error::custom("not a size (e.g. 10G, 512M)"))
}

/// [`size`] for an optional field.
pub fn optional_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    size(d).map(Some)
}

/// Deserializes a percentage 0-100, with or without `%`.
pub fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim_end_matches('%').parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(de::Error::custom("not a percentage 0-100")),
    }
}

/// [`percent`] for an optional field.
pub fn optional_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    percent(d).map(Some)
}

/// The selected options as a map; `next` is one past the entry being read.
struct Entries<'a> {
    entries: &'a [(&'a str, &'a str, &'a str)],
    next: usize,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((_, name, _)) = self.entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let name: StrDeserializer<'_, DeError> = name.into_deserializer();
        seed.deserialize(name).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (_, _, value) = self.entries[self.next - 1];
        seed.deserialize(Text(value))
    }
}

/// The options as a whole: a map of names to text values.
struct Options<'m, 'a> {
    map: &'m mut Entries<'a>,
}

impl<'de> Deserializer<'de> for Options<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(self.map)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// One option's text, read as the type the config field asks for.
struct Text<'a>(&'a str);

impl Text<'_> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {what}")))
    }
}

macro_rules! numbers {
    ($($method:ident $visit:ident $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.parse::<$ty>(concat!("a number (", stringify!($ty), ")"))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Text<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            "true" | "yes" | "1" | "on" => visitor.visit_bool(true),
            "false" | "no" | "0" | "off" => visitor.visit_bool(false),
            _ => Err(de::Error::custom("expected true or false")),
        }
    }

    numbers!(deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
        deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let words = self.0.split_whitespace();
        visitor.visit_seq(de::value::SeqDeserializer::new(words))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let text: StrDeserializer<'_, DeError> = self.0.into_deserializer();
        text.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        i8 i16 i128 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        #[serde(alias = "yes")]
        Auto,
        Never,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        flag: bool,
        mode: Mode,
        #[serde(deserialize_with = "size")]
        size: u64,
        #[serde(deserialize_with = "optional_percent")]
        share: Option<u8>,
        args: Vec<String>,
        count: u32,
    }

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(kv: &[(&str, &str)]) -> Result<Sample, OptionError> {
        parse_options("sample", "s", &opts(kv))
    }

    #[test]
    fn reads_every_kind_of_value_and_ignores_other_prefixes() {
        let s = parse(&[
            ("s.flag", "on"),
            ("s.mode", "never"),
            ("s.size", "2G"),
            ("s.share", "5%"),
            ("s.args", "-m 0  -E x"),
            ("s.count", "7"),
            ("other.flag", "maybe"),
            ("sx.flag", "maybe"),
        ])
        .expect("valid options");
        let want = Sample {
            flag: true,
            mode: Mode::Never,
            size: 2 << 30,
            share: Some(5),
            args: vec!["-m".into(), "0".into(), "-E".into(), "x".into()],
            count: 7,
        };
        assert_eq!(s, want);
        assert_eq!(parse(&[]).unwrap(), Sample::default());
        assert_eq!(parse(&[("s.mode", "yes")]).unwrap().mode, Mode::Auto);
    }

    #[test]
    fn errors_name_the_driver_key_and_value() {
        for (key, value) in [
            ("s.colour", "red"),
            ("s.flag", "maybe"),
            ("s.mode", "sometimes"),
            ("s.size", "lots"),
            ("s.share", "120"),
            ("s.count", "-1"),
        ] {
            let e = parse(&[("s.args", "a"), (key, value)]).expect_err(key);
            assert_eq!((e.key.as_str(), e.value.as_str()), (key, value), "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("sample option {key}=")), "{text}");
        }
    }
}
