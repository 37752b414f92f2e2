//! `as_str` and `parse` for the enums stored and sent as plain strings (statuses, roles,
//! providers), generated from one list so the two directions cannot disagree.

/// `text_enum!(Type { Variant => "text", ... })` implements `Type::as_str` and `Type::parse`.
/// The texts must match the enum's serde names (the test below checks every enum).
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use crate::{ChatRole, ChatStatus, ModelStatus, ProviderKind, TenantStatus};

    /// Each text is the variant's serde name, and parses back to the same variant.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + serde::Serialize,
    {
        for &value in all {
            let text = as_str(value);
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::Value::from(text)
            );
            assert_eq!(parse(text), Some(value));
        }
    }

    #[test]
    fn texts_match_serde_and_parse_back() {
        round_trips(
            &[TenantStatus::Active, TenantStatus::Inactive],
            TenantStatus::as_str,
            TenantStatus::parse,
        );
        round_trips(
            &[ModelStatus::Active, ModelStatus::Deprecated],
            ModelStatus::as_str,
            ModelStatus::parse,
        );
        round_trips(
            &[
                ProviderKind::Anthropic,
                ProviderKind::Bedrock,
                ProviderKind::Openai,
            ],
            ProviderKind::as_str,
            ProviderKind::parse,
        );
        round_trips(
            &[ChatStatus::Active, ChatStatus::Archived],
            ChatStatus::as_str,
            ChatStatus::parse,
        );
        round_trips(
            &[ChatRole::User, ChatRole::Assistant],
            ChatRole::as_str,
            ChatRole::parse,
        );
        assert_eq!(TenantStatus::parse("Active"), None);
    }
}
