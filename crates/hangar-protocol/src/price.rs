//! Prices in exact decimal: USD per 1,000 tokens with six decimal places (the original's
//! `numeric(10,6)`), held as an integer number of micro-dollars. No floats anywhere: a price is
//! parsed from its decimal text and printed back the same way (`"5.000000"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

const SCALE: i64 = 1_000_000;
/// `numeric(10,6)` leaves four integer digits.
const MAX_MICROS: i64 = 10_000 * SCALE - 1;

/// USD per 1,000 tokens, exact to 1e-6. Serialised as a decimal string; accepted as a string or
/// a JSON number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, example = "3.000000")]
pub struct Price(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price must be a non-negative decimal number such as \"3.5\"")]
    Malformed,
    #[error("price may have at most 6 decimal places")]
    TooPrecise,
    #[error("price must be below 10000 USD per 1K tokens")]
    TooLarge,
}

impl Price {
    pub const ZERO: Price = Price(0);

    /// Micro-dollars per 1,000 tokens, which is also nano-dollars per token.
    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn from_micros(micros: i64) -> Result<Self, PriceError> {
        if micros < 0 {
            return Err(PriceError::Malformed);
        }
        if micros > MAX_MICROS {
            return Err(PriceError::TooLarge);
        }
        Ok(Self(micros))
    }
}

impl FromStr for Price {
    type Err = PriceError;

    fn from_str(text: &str) -> Result<Self, PriceError> {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) {
            return Err(PriceError::Malformed);
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 6 {
            return Err(PriceError::TooPrecise);
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 4 {
            return Err(PriceError::TooLarge);
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| PriceError::Malformed)?
        };
        let frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| PriceError::Malformed)?
        };
        Self::from_micros(whole * SCALE + frac_micros)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}", self.0 / SCALE, self.0 % SCALE)
    }
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A JSON number arrives as f64/u64; its shortest round-trip text is the literal the
        // client wrote (for every price with at most 6 decimals), which is then parsed exactly.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) if x.is_finite() && x >= 0.0 => format!("{x}"),
            Raw::Float(_) => return Err(serde::de::Error::custom(PriceError::Malformed)),
        };
        text.trim().parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, micros, shown) in [
            ("5", 5_000_000, "5.000000"),
            ("0.003", 3_000, "0.003000"),
            ("0.000001", 1, "0.000001"),
            (".5", 500_000, "0.500000"),
            ("12.340000000", 12_340_000, "12.340000"),
            ("9999.999999", 9_999_999_999, "9999.999999"),
        ] {
            let price: Price = text.parse().unwrap();
            assert_eq!(price.micros(), micros, "{text}");
            assert_eq!(price.to_string(), shown);
        }
    }

    #[test]
    fn rejects_bad_prices() {
        assert_eq!("0.0000001".parse::<Price>(), Err(PriceError::TooPrecise));
        assert_eq!("10000".parse::<Price>(), Err(PriceError::TooLarge));
        for bad in ["", ".", "-1", "1e3", "abc", "1.2.3", " 1"] {
            assert_eq!(bad.parse::<Price>(), Err(PriceError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn json_numbers_and_strings() {
        let p: Price = serde_json::from_str("0.003").unwrap();
        assert_eq!(p.micros(), 3_000);
        let p: Price = serde_json::from_str("\"15\"").unwrap();
        assert_eq!(p.micros(), 15_000_000);
        let p: Price = serde_json::from_str("3").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"3.000000\"");
        assert!(serde_json::from_str::<Price>("-0.5").is_err());
        assert!(serde_json::from_str::<Price>("true").is_err());
    }
}
