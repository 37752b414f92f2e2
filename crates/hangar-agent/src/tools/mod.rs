//! The built-in tools, one file each, and the registry that validates calls against their
//! schemas.

// Built-in tools (one module per tool).
mod edit;
mod fs_util;
mod glob;
mod grep;
mod ls;
mod read;
#[cfg(test)]
mod test_support;
mod web_fetch;
mod write;
pub use edit::{Edit, MultiEdit};
pub use glob::Glob;
pub use grep::Grep;
pub use ls::Ls;
pub use read::Read;
pub use web_fetch::{WebFetch, WebFetchLimits};
pub use write::Write;

mod bash;
mod present;
mod task;
mod todo;

use std::collections::BTreeMap;
use std::sync::Arc;

use hangar_llm::ToolSpec;
use serde_json::Value;

pub use bash::Bash;
pub use present::PresentFiles;
pub use task::{TASK_TOOL, TaskInput, task_spec};
pub use todo::TodoWrite;

use crate::Tool;

/// Every built-in tool the loop does not carry out itself.
pub fn builtin() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(Bash),
        Arc::new(Read),
        Arc::new(Write),
        Arc::new(Edit),
        Arc::new(MultiEdit),
        Arc::new(Glob),
        Arc::new(Grep),
        Arc::new(Ls),
        Arc::new(TodoWrite),
        Arc::new(PresentFiles),
    ]
}

/// The longest validation report returned to the model.
const MAX_VALIDATION_ERRORS: usize = 5;

struct Registered {
    tool: Arc<dyn Tool>,
    validator: jsonschema::Validator,
}

/// The tools of a run, by name, with their compiled input schemas.
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Registered>,
    /// Specs the model sees that are carried out by the loop itself (`Task`), with their
    /// compiled schemas.
    loop_tools: Vec<(ToolSpec, jsonschema::Validator)>,
}

impl ToolRegistry {
    /// Registers `tools`; a tool whose schema does not compile is an error naming it.
    pub fn new(tools: impl IntoIterator<Item = Arc<dyn Tool>>) -> Result<Self, String> {
        let mut registry = Self::default();
        for tool in tools {
            registry.add(tool)?;
        }
        Ok(registry)
    }

    pub fn add(&mut self, tool: Arc<dyn Tool>) -> Result<(), String> {
        let validator = compile(tool.name(), &tool.input_schema())?;
        self.tools
            .insert(tool.name().to_owned(), Registered { tool, validator });
        Ok(())
    }

    /// Adds a tool the loop carries out itself; the registry only validates its input.
    pub fn add_loop_tool(&mut self, spec: ToolSpec) -> Result<(), String> {
        let validator = compile(&spec.name, &spec.input_schema)?;
        self.loop_tools.retain(|(s, _)| s.name != spec.name);
        self.loop_tools.push((spec, validator));
        Ok(())
    }

    /// Keeps only the tools `allow` names (all when `None`) and drops those `deny` names.
    /// Names may end in `*` to match a prefix (`mcp__github__*`).
    pub fn retain(&mut self, allow: Option<&[String]>, deny: &[String]) {
        let keep = |name: &str| {
            allow.is_none_or(|allow| allow.iter().any(|p| name_matches(p, name)))
                && !deny.iter().any(|p| name_matches(p, name))
        };
        self.tools.retain(|name, _| keep(name));
        self.loop_tools.retain(|(spec, _)| keep(&spec.name));
    }

    /// The tool names, loop tools last.
    pub fn names(&self) -> Vec<String> {
        self.tools
            .keys()
            .cloned()
            .chain(self.loop_tools.iter().map(|(s, _)| s.name.clone()))
            .collect()
    }

    /// What the model is told about the tools.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .values()
            .map(|r| ToolSpec {
                name: r.tool.name().to_owned(),
                description: r.tool.description(),
                input_schema: r.tool.input_schema(),
                cache: None,
            })
            .chain(self.loop_tools.iter().map(|(s, _)| s.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name).map(|r| &r.tool)
    }

    pub fn is_loop_tool(&self, name: &str) -> bool {
        self.loop_tools.iter().any(|(s, _)| s.name == name)
    }

    /// Whether a call of `name` only reads (unknown tools count as not read-only).
    pub fn read_only(&self, name: &str) -> bool {
        self.tools.get(name).is_some_and(|r| r.tool.read_only())
    }

    /// Checks `input` against the tool's schema; the error lists what is wrong, for the model.
    pub fn validate(&self, name: &str, input: &Value) -> Result<(), String> {
        let validator = self
            .tools
            .get(name)
            .map(|r| &r.validator)
            .or_else(|| {
                self.loop_tools
                    .iter()
                    .find(|(s, _)| s.name == name)
                    .map(|(_, v)| v)
            })
            .ok_or_else(|| format!("no tool named {name:?} is available"))?;
        let errors: Vec<String> = validator
            .iter_errors(input)
            .take(MAX_VALIDATION_ERRORS)
            .map(|e| describe(&e.instance_path().to_string(), &e.to_string()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("invalid input for {name}: {}", errors.join("; ")))
        }
    }
}

fn compile(name: &str, schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|err| format!("tool {name}: invalid input schema: {err}"))
}

fn describe(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Reads `tool`'s input into its typed form (the input has passed the schema already, so a
/// failure here is reported to the model like a schema violation).
pub(crate) fn parse_input<T: serde::de::DeserializeOwned>(
    tool: &str,
    input: Value,
) -> Result<T, crate::ToolError> {
    serde_json::from_value(input)
        .map_err(|err| crate::ToolError::Failed(format!("invalid input for {tool}: {err}")))
}
