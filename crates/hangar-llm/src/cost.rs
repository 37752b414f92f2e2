//! The cost of a model call: exact integer arithmetic from the model's price table (seed contract
//! §9.2). Prices are micro-dollars per 1,000 tokens, which is nano-dollars per token, so
//! `cost = Σ tokens × price` in nano-dollars with no rounding at all.

use hangar_protocol::{Model, Price, Usd};

use crate::Usage;

/// A model's prices, USD per 1,000 tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: Price,
    pub output: Price,
    pub cache_write_5m: Price,
    pub cache_write_1h: Price,
    pub cache_read: Price,
}

impl From<&Model> for Prices {
    fn from(model: &Model) -> Self {
        Self {
            input: model.input_token_price,
            output: model.output_token_price,
            cache_write_5m: model.cache_creation_5m_price,
            cache_write_1h: model.cache_creation_1h_price,
            cache_read: model.cache_read_price,
        }
    }
}

/// What `usage` costs at `prices`. Saturates instead of overflowing (at nine billion dollars).
pub fn cost_of(usage: &Usage, prices: &Prices) -> Usd {
    let term = |tokens: u64, price: Price| {
        i64::try_from(tokens)
            .unwrap_or(i64::MAX)
            .saturating_mul(price.micros())
    };
    let nanos = [
        term(usage.input_tokens, prices.input),
        term(usage.output_tokens, prices.output),
        term(usage.cache_write_5m_tokens, prices.cache_write_5m),
        term(usage.cache_write_1h_tokens, prices.cache_write_1h),
        term(usage.cache_read_tokens, prices.cache_read),
    ]
    .into_iter()
    .fold(0_i64, i64::saturating_add);
    Usd::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(text: &str) -> Price {
        text.parse().unwrap()
    }

    /// Claude Sonnet-like prices: $3 / $15 per 1M tokens; 5m write 1.25×, 1h write 2×, read 0.1×.
    fn sonnet() -> Prices {
        Prices {
            input: price("0.003"),
            output: price("0.015"),
            cache_write_5m: price("0.00375"),
            cache_write_1h: price("0.006"),
            cache_read: price("0.0003"),
        }
    }

    #[test]
    fn hand_computed_cases() {
        // 1,000 in + 500 out = 0.003 + 0.0075 = 0.0105
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            ..Usage::default()
        };
        assert_eq!(cost_of(&usage, &sonnet()).to_string(), "0.010500");
        // All five kinds: 1234 in, 567 out, 2000 5m-write, 3000 1h-write, 10000 read.
        // 1234×0.000003 = 0.003702; 567×0.000015 = 0.008505; 2000×0.00000375 = 0.0075;
        // 3000×0.000006 = 0.018; 10000×0.0000003 = 0.003 → 0.040707
        let usage = Usage {
            input_tokens: 1_234,
            output_tokens: 567,
            cache_write_5m_tokens: 2_000,
            cache_write_1h_tokens: 3_000,
            cache_read_tokens: 10_000,
        };
        assert_eq!(cost_of(&usage, &sonnet()).nanos(), 40_707_000);
        assert_eq!(cost_of(&usage, &sonnet()).to_string(), "0.040707");
        // One token at a price with six decimals is exact: 1 × 0.000001/1000 = 1e-9.
        let tiny = Prices {
            input: price("0.000001"),
            ..Prices::default()
        };
        assert_eq!(
            cost_of(
                &Usage {
                    input_tokens: 1,
                    ..Usage::default()
                },
                &tiny
            )
            .to_string(),
            "0.000000001"
        );
        assert_eq!(cost_of(&Usage::default(), &sonnet()), Usd::ZERO);
    }

    #[test]
    fn openai_style_cached_tokens() {
        // OpenAI reports prompt_tokens including cached ones; the adapter maps 10,000 prompt
        // tokens of which 8,000 cached to input 2,000 + cache_read 8,000.
        let prices = Prices {
            input: price("0.0025"),
            output: price("0.01"),
            cache_read: price("0.00125"),
            ..Prices::default()
        };
        let usage = Usage {
            input_tokens: 2_000,
            output_tokens: 100,
            cache_read_tokens: 8_000,
            ..Usage::default()
        };
        // 2000×0.0000025 = 0.005; 100×0.00001 = 0.001; 8000×0.00000125 = 0.01 → 0.016
        assert_eq!(cost_of(&usage, &prices).to_string(), "0.016000");
    }

    #[test]
    fn saturates() {
        let usage = Usage {
            input_tokens: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(cost_of(&usage, &sonnet()).nanos(), i64::MAX);
    }
}
