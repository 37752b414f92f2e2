//! How full the model's context window is (the `context_status` event, contract §2.2 and §9.4).
//!
//! The original estimated it by adding up every run's tokens, which overcounts (each call's
//! input already contains the history). Hangar uses the real size of the last call: its input
//! tokens (cached or not) plus its output, which is what the next call starts from.

use hangar_llm::Usage;
use hangar_protocol::{RunEvent, WarningLevel};

pub const WARNING_PERCENT: f64 = 70.0;
pub const CRITICAL_PERCENT: f64 = 85.0;
pub const BLOCKED_PERCENT: f64 = 95.0;

/// The tokens the next call starts from after a call with `usage`.
pub fn context_tokens(usage: &Usage) -> u64 {
    usage.input_tokens
        + usage.cache_read_tokens
        + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens
        + usage.output_tokens
}

pub fn level(percent: f64) -> WarningLevel {
    if percent >= BLOCKED_PERCENT {
        WarningLevel::Blocked
    } else if percent >= CRITICAL_PERCENT {
        WarningLevel::Critical
    } else if percent >= WARNING_PERCENT {
        WarningLevel::Warning
    } else {
        WarningLevel::Normal
    }
}

/// The `context_status` event for `current` tokens of a `window`. At the blocked level the
/// conversation can still continue: the next run compacts older turns first.
pub fn status_event(current: u64, window: u64) -> RunEvent {
    let percent = if window == 0 {
        0.0
    } else {
        ((current as f64 / window as f64) * 1000.0).round() / 10.0
    };
    let warning_level = level(percent);
    let (message, action) = match warning_level {
        WarningLevel::Normal => (None, None),
        WarningLevel::Warning => (
            Some(
                "The conversation is getting long; older turns will be summarised when the context fills up.",
            ),
            Some("new_chat"),
        ),
        WarningLevel::Critical => (
            Some("The context window is nearly full; the next run will summarise older turns."),
            Some("new_chat"),
        ),
        WarningLevel::Blocked => (
            Some("The context window is full; the next run will summarise older turns before it starts."),
            Some("new_chat"),
        ),
    };
    RunEvent::ContextStatus {
        current_context_tokens: current,
        max_context_tokens: window,
        usage_percent: percent,
        warning_level,
        can_continue: true,
        message: message.map(str::to_owned),
        recommended_action: action.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_the_contract() {
        assert_eq!(level(69.9), WarningLevel::Normal);
        assert_eq!(level(70.0), WarningLevel::Warning);
        assert_eq!(level(85.0), WarningLevel::Critical);
        assert_eq!(level(95.0), WarningLevel::Blocked);
        let RunEvent::ContextStatus { usage_percent, .. } = status_event(1234, 10_000) else {
            panic!("not a context status");
        };
        assert_eq!(usage_percent, 12.3);
    }
}
