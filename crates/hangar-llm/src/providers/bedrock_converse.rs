//! Bedrock's model-neutral Converse API, used for every Bedrock model that is not an Anthropic
//! one (Nova, Llama, Mistral, …): the normalised request mapped onto the SDK's Converse types, and
//! a decoder from `ConverseStream` events to normalised [`StreamEvent`]s.
//!
//! Converse sends no `contentBlockStart` for text or reasoning, so those blocks start on their
//! first delta; its `metadata` (usage) follows `messageStop`, so `Stop` is emitted when the stream
//! ends.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, CacheTtl as SdkCacheTtl, ContentBlock as SdkBlock, ContentBlockDelta,
    ContentBlockStart, ConversationRole, ConverseStreamOutput as SdkEvent, ImageBlock, ImageFormat,
    ImageSource as SdkImageSource, InferenceConfiguration, Message as SdkMessage, ReasoningContentBlock,
    ReasoningContentBlockDelta, ReasoningTextBlock, SystemContentBlock, TokenUsage, Tool, ToolConfiguration,
    ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::{
    BlockKind, CacheTtl, ContentBlock, ImageSource, LlmError, ModelRequest, Role, StopReason, StreamEvent,
    ToolResultContent, Usage,
};

/// The Converse form of a [`ModelRequest`].
#[derive(Debug, Clone)]
pub(crate) struct ConverseRequest {
    pub system: Vec<SystemContentBlock>,
    pub messages: Vec<SdkMessage>,
    pub tool_config: Option<ToolConfiguration>,
    pub inference: InferenceConfiguration,
}

/// A request Hangar cannot express (rejected before anything is sent, like an HTTP 400 would be).
fn invalid(message: impl Into<String>) -> LlmError {
    LlmError::InvalidRequest {
        status: 400,
        message: message.into(),
    }
}

fn built<T>(result: Result<T, aws_sdk_bedrockruntime::error::BuildError>) -> Result<T, LlmError> {
    result.map_err(|e| invalid(format!("cannot build the Converse request: {e}")))
}

/// A JSON value as a Smithy document (tool inputs and schemas).
pub(crate) fn document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Document::Number(Number::PosInt(u)),
            (None, Some(i), _) => Document::Number(Number::NegInt(i)),
            (None, None, Some(f)) => Document::Number(Number::Float(f)),
            (None, None, None) => Document::Null,
        },
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), document(v))).collect()),
    }
}

fn cache_point(ttl: CacheTtl) -> Result<CachePointBlock, LlmError> {
    let builder = CachePointBlock::builder().r#type(CachePointType::Default);
    built(match ttl {
        CacheTtl::FiveMinutes => builder.build(),
        CacheTtl::OneHour => builder.ttl(SdkCacheTtl::OneHour).build(),
    })
}

fn image(source: &ImageSource) -> Result<ImageBlock, LlmError> {
    let format = match source.media_type.as_str() {
        "image/png" => ImageFormat::Png,
        "image/jpeg" | "image/jpg" => ImageFormat::Jpeg,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::Webp,
        other => {
            return Err(invalid(format!(
                "image type {other:?} is not supported by Converse"
            )));
        }
    };
    let bytes = BASE64
        .decode(source.data.trim())
        .map_err(|e| invalid(format!("image data is not valid base64: {e}")))?;
    built(
        ImageBlock::builder()
            .format(format)
            .source(SdkImageSource::Bytes(Blob::new(bytes)))
            .build(),
    )
}

fn content(block: &ContentBlock, out: &mut Vec<SdkBlock>) -> Result<(), LlmError> {
    let mut cache = None;
    match block {
        ContentBlock::Text { text, cache: mark } => {
            out.push(SdkBlock::Text(text.clone()));
            cache = *mark;
        }
        ContentBlock::Image { source } => out.push(SdkBlock::Image(image(source)?)),
        ContentBlock::ToolUse { id, name, input } => {
            let input = if input.is_null() {
                Document::Object(HashMap::new())
            } else {
                document(input)
            };
            out.push(SdkBlock::ToolUse(built(
                ToolUseBlock::builder()
                    .tool_use_id(id)
                    .name(name)
                    .input(input)
                    .build(),
            )?));
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
            cache: mark,
        } => {
            let mut parts = Vec::new();
            for part in content {
                parts.push(match part {
                    ToolResultContent::Text { text } => ToolResultContentBlock::Text(text.clone()),
                    ToolResultContent::Image { source } => ToolResultContentBlock::Image(image(source)?),
                });
            }
            let status = if *is_error {
                ToolResultStatus::Error
            } else {
                ToolResultStatus::Success
            };
            out.push(SdkBlock::ToolResult(built(
                ToolResultBlock::builder()
                    .tool_use_id(tool_use_id)
                    .set_content(Some(parts))
                    .status(status)
                    .build(),
            )?));
            cache = *mark;
        }
        ContentBlock::Thinking { thinking, signature } => {
            let text = built(
                ReasoningTextBlock::builder()
                    .text(thinking)
                    .signature(signature)
                    .build(),
            )?;
            out.push(SdkBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(
                text,
            )));
        }
        ContentBlock::RedactedThinking { data } => {
            // The stream hands redacted reasoning out as bytes, which this crate carries as base64.
            let bytes = BASE64
                .decode(data.trim())
                .unwrap_or_else(|_| data.clone().into_bytes());
            out.push(SdkBlock::ReasoningContent(
                ReasoningContentBlock::RedactedContent(Blob::new(bytes)),
            ));
        }
    }
    if let Some(ttl) = cache {
        out.push(SdkBlock::CachePoint(cache_point(ttl)?));
    }
    Ok(())
}

/// Maps `request` onto Converse. The thinking budget is not mapped: reasoning settings differ per
/// model family and travel in `additionalModelRequestFields`.
pub(crate) fn converse_request(request: &ModelRequest) -> Result<ConverseRequest, LlmError> {
    let mut system = Vec::new();
    for block in &request.system {
        system.push(SystemContentBlock::Text(block.text.clone()));
        if let Some(ttl) = block.cache {
            system.push(SystemContentBlock::CachePoint(cache_point(ttl)?));
        }
    }
    let mut messages = Vec::new();
    for message in &request.messages {
        let mut blocks = Vec::new();
        for block in &message.content {
            content(block, &mut blocks)?;
        }
        let role = match message.role {
            Role::User => ConversationRole::User,
            Role::Assistant => ConversationRole::Assistant,
        };
        messages.push(built(
            SdkMessage::builder().role(role).set_content(Some(blocks)).build(),
        )?);
    }
    let tool_config = if request.tools.is_empty() {
        None
    } else {
        let mut tools = Vec::new();
        for tool in &request.tools {
            let spec = ToolSpecification::builder()
                .name(&tool.name)
                .description(&tool.description)
                .input_schema(ToolInputSchema::Json(document(&tool.input_schema)))
                .build();
            tools.push(Tool::ToolSpec(built(spec)?));
            if let Some(ttl) = tool.cache {
                tools.push(Tool::CachePoint(cache_point(ttl)?));
            }
        }
        Some(built(
            ToolConfiguration::builder().set_tools(Some(tools)).build(),
        )?)
    };
    let inference = InferenceConfiguration::builder()
        .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
        .set_temperature(request.temperature)
        .set_stop_sequences((!request.stop_sequences.is_empty()).then(|| request.stop_sequences.clone()))
        .build();
    Ok(ConverseRequest {
        system,
        messages,
        tool_config,
        inference,
    })
}

/// Maps Converse's `stopReason`.
pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolUse,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "content_filtered" | "guardrail_intervened" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

fn count(n: i32) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Maps `metadata.usage`. Cache writes split by `cacheDetails` TTL when present; the rest of
/// `cacheWriteInputTokens` counts as 5-minute writes.
pub(crate) fn usage(usage: &TokenUsage) -> Usage {
    let (mut five, mut hour) = (0u64, 0u64);
    for detail in usage.cache_details() {
        match detail.ttl() {
            SdkCacheTtl::OneHour => hour += count(detail.input_tokens()),
            _ => five += count(detail.input_tokens()),
        }
    }
    let total = usage.cache_write_input_tokens().map(count).unwrap_or(0);
    five += total.saturating_sub(five + hour);
    Usage {
        input_tokens: count(usage.input_tokens()),
        output_tokens: count(usage.output_tokens()),
        cache_write_5m_tokens: five,
        cache_write_1h_tokens: hour,
        cache_read_tokens: usage.cache_read_input_tokens().map(count).unwrap_or(0),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    Redacted,
    ToolUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Open(Kind),
    Closed,
    Ignored,
}

/// Turns `ConverseStream` events into normalised events.
#[derive(Debug, Clone)]
pub(crate) struct ConverseDecoder {
    model: String,
    started: bool,
    blocks: BTreeMap<usize, Block>,
    stop: Option<StopReason>,
}

fn protocol(message: impl Into<String>) -> LlmError {
    LlmError::Protocol(message.into())
}

impl ConverseDecoder {
    pub(crate) fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            started: false,
            blocks: BTreeMap::new(),
            stop: None,
        }
    }

    pub(crate) fn feed(&mut self, event: SdkEvent) -> Result<Vec<StreamEvent>, LlmError> {
        if !self.started && !matches!(event, SdkEvent::MessageStart(_)) {
            return Err(protocol("a Converse event before messageStart"));
        }
        match event {
            SdkEvent::MessageStart(_) => {
                if self.started {
                    return Err(protocol("a second messageStart"));
                }
                self.started = true;
                Ok(vec![StreamEvent::MessageStart {
                    id: None,
                    model: Some(self.model.clone()),
                }])
            }
            SdkEvent::ContentBlockStart(start) => {
                let index = Self::index(start.content_block_index())?;
                if self.blocks.contains_key(&index) {
                    return Err(protocol(format!("content block {index} started twice")));
                }
                match start.start() {
                    Some(ContentBlockStart::ToolUse(tool)) => {
                        self.blocks.insert(index, Block::Open(Kind::ToolUse));
                        Ok(vec![StreamEvent::BlockStart {
                            index,
                            block: BlockKind::ToolUse {
                                id: tool.tool_use_id().to_owned(),
                                name: tool.name().to_owned(),
                            },
                        }])
                    }
                    _ => {
                        self.blocks.insert(index, Block::Ignored);
                        Ok(Vec::new())
                    }
                }
            }
            SdkEvent::ContentBlockDelta(delta) => {
                let index = Self::index(delta.content_block_index())?;
                match delta.delta() {
                    Some(d) => self.delta(index, d),
                    None => Ok(Vec::new()),
                }
            }
            SdkEvent::ContentBlockStop(stop) => {
                let index = Self::index(stop.content_block_index())?;
                match self.blocks.get(&index) {
                    Some(Block::Open(_)) => {
                        self.blocks.insert(index, Block::Closed);
                        Ok(vec![StreamEvent::BlockStop { index }])
                    }
                    Some(Block::Closed) => Err(protocol(format!("content block {index} stopped twice"))),
                    // An empty text block, or one this version skips.
                    Some(Block::Ignored) | None => Ok(Vec::new()),
                }
            }
            SdkEvent::MessageStop(stop) => {
                self.stop = Some(stop_reason(stop.stop_reason().as_str()));
                Ok(Vec::new())
            }
            SdkEvent::Metadata(meta) => Ok(meta
                .usage()
                .map(|u| StreamEvent::Usage(usage(u)))
                .into_iter()
                .collect()),
            _ => Ok(Vec::new()),
        }
    }

    fn index(raw: i32) -> Result<usize, LlmError> {
        usize::try_from(raw).map_err(|_| protocol(format!("negative content block index {raw}")))
    }

    /// Opens block `index` as `kind` if it has not started; errs if it is another kind.
    fn ensure(&mut self, index: usize, kind: Kind, block: BlockKind) -> Result<Vec<StreamEvent>, LlmError> {
        match self.blocks.get(&index) {
            None => {
                self.blocks.insert(index, Block::Open(kind));
                Ok(vec![StreamEvent::BlockStart { index, block }])
            }
            Some(Block::Open(open)) if *open == kind => Ok(Vec::new()),
            Some(other) => Err(protocol(format!(
                "a {kind:?} delta for content block {index} ({other:?})"
            ))),
        }
    }

    fn delta(&mut self, index: usize, delta: &ContentBlockDelta) -> Result<Vec<StreamEvent>, LlmError> {
        if self.blocks.get(&index) == Some(&Block::Ignored) {
            return Ok(Vec::new());
        }
        let mut events;
        match delta {
            ContentBlockDelta::Text(text) => {
                events = self.ensure(index, Kind::Text, BlockKind::Text)?;
                if !text.is_empty() {
                    events.push(StreamEvent::TextDelta {
                        index,
                        text: text.clone(),
                    });
                }
            }
            ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::RedactedContent(blob)) => {
                let data = BASE64.encode(blob.as_ref());
                events = self.ensure(index, Kind::Redacted, BlockKind::RedactedThinking { data })?;
            }
            ContentBlockDelta::ReasoningContent(reasoning) => {
                events = self.ensure(index, Kind::Thinking, BlockKind::Thinking)?;
                match reasoning {
                    ReasoningContentBlockDelta::Text(thinking) if !thinking.is_empty() => {
                        events.push(StreamEvent::ThinkingDelta {
                            index,
                            thinking: thinking.clone(),
                        });
                    }
                    ReasoningContentBlockDelta::Signature(signature) if !signature.is_empty() => {
                        events.push(StreamEvent::SignatureDelta {
                            index,
                            signature: signature.clone(),
                        });
                    }
                    _ => {}
                }
            }
            ContentBlockDelta::ToolUse(tool) => {
                if self.blocks.get(&index) != Some(&Block::Open(Kind::ToolUse)) {
                    return Err(protocol(format!(
                        "tool input for content block {index}, not an open tool call"
                    )));
                }
                events = Vec::new();
                if !tool.input().is_empty() {
                    events.push(StreamEvent::ToolInputDelta {
                        index,
                        partial_json: tool.input().to_owned(),
                    });
                }
            }
            // Citations, images, tool results and future kinds carry nothing Hangar normalises.
            _ => events = Vec::new(),
        }
        Ok(events)
    }

    /// The stream ended: `Stop` (after stopping stragglers) if `messageStop` came, else an error.
    pub(crate) fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        let Some(reason) = self.stop.take() else {
            return Err(protocol("the Converse stream ended before messageStop"));
        };
        let mut events = Vec::new();
        for (index, block) in &mut self.blocks {
            if matches!(block, Block::Open(_)) {
                *block = Block::Closed;
                events.push(StreamEvent::BlockStop { index: *index });
            }
        }
        events.push(StreamEvent::Stop {
            reason,
            stop_sequence: None,
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests;
