//! Money spent, exact to a billionth of a dollar. A price of `p` micro-dollars per 1,000 tokens
//! is `p` nano-dollars per token, so `tokens × price` is exact in this unit: no rounding, no
//! floats, and the cost shown in a stream equals the cost stored.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// US dollars in nano-dollar units. Shown as a decimal string with at least six decimals
/// (`"0.000315"`), more only when needed (`"0.0000003"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, ToSchema)]
#[schema(value_type = String, example = "0.000315")]
pub struct Usd(i64);

const NANOS: i64 = 1_000_000_000;

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let nanos = NANOS.unsigned_abs();
        let fraction = format!("{:09}", abs % nanos);
        let trimmed = fraction.trim_end_matches('0');
        let shown = if trimmed.len() < 6 {
            &fraction[..6]
        } else {
            trimmed
        };
        write!(f, "{sign}{}.{shown}", abs / nanos)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::str::FromStr for Usd {
    type Err = String;

    /// Parses `"0.000315"` (up to nine decimals) back into nano-dollars.
    fn from_str(text: &str) -> Result<Self, String> {
        let (sign, body) = text.strip_prefix('-').map_or((1, text), |rest| (-1, rest));
        let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > 9 {
            return Err(format!("not a dollar amount: {text:?}"));
        }
        let whole: i64 = whole.parse().map_err(|_| format!("amount too large: {text:?}"))?;
        let frac: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| text.to_owned())?
        };
        whole
            .checked_mul(NANOS)
            .and_then(|n| n.checked_add(frac))
            .map(|n| Usd(sign * n))
            .ok_or_else(|| format!("amount too large: {text:?}"))
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Usd;

    #[test]
    fn parse_round_trips() {
        for nanos in [0, 315_000, 300, 1, 5_000_000_000, 12_345_678_912, -1_500_000] {
            let usd = Usd::from_nanos(nanos);
            assert_eq!(usd.to_string().parse::<Usd>(), Ok(usd));
        }
        assert!("1.0000000001".parse::<Usd>().is_err());
        assert!("abc".parse::<Usd>().is_err());
    }

    #[test]
    fn display() {
        for (nanos, text) in [
            (0, "0.000000"),
            (315_000, "0.000315"),
            (300, "0.0000003"),
            (1, "0.000000001"),
            (5_000_000_000, "5.000000"),
            (12_345_678_912, "12.345678912"),
            (-1_500_000, "-0.001500"),
        ] {
            assert_eq!(Usd::from_nanos(nanos).to_string(), text);
        }
    }
}
