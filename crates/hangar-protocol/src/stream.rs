//! The body of `POST …/conversations/{id}/stream` (contract §1.5): the multipart form's
//! `request_data` and `file_metadata`, or the same `StreamRequest` as a plain JSON body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorDetail, Violations};

/// Longest user message accepted, in characters.
pub const MAX_USER_INPUT_CHARS: usize = 200_000;

/// Who sent the message. Only `user_id` is used (for usage records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Executor {
    pub user_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub employee_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    pub user_input: String,
    pub executor: Executor,
    /// Values for MCP header templates; never stored or logged.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    #[serde(default)]
    pub preferred_skills: Vec<String>,
}

impl StreamRequest {
    pub fn validate(&self) -> Violations {
        let mut problems = Vec::new();
        if self.user_input.trim().is_empty() {
            problems.push(ErrorDetail::field(
                "body.user_input",
                "missing",
                "user_input must not be empty",
            ));
        } else if self.user_input.chars().count() > MAX_USER_INPUT_CHARS {
            problems.push(ErrorDetail::field(
                "body.user_input",
                "too_long",
                format!("user_input must be at most {MAX_USER_INPUT_CHARS} characters"),
            ));
        }
        if self.executor.user_id.trim().is_empty() {
            problems.push(ErrorDetail::field(
                "body.executor.user_id",
                "missing",
                "executor.user_id must not be empty",
            ));
        }
        problems
    }
}

/// One entry of the multipart `file_metadata` array, describing the file part of the same
/// position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileUploadMetadata {
    pub filename: String,
    #[serde(default)]
    pub original_name: String,
    pub relative_path: String,
    #[serde(default)]
    pub original_relative_path: String,
    #[serde(default = "octet_stream")]
    pub content_type: String,
    pub size: u64,
}

fn octet_stream() -> String {
    "application/octet-stream".to_owned()
}
