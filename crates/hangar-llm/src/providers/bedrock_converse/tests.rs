//! Unit tests of the Converse request mapping and stream decoder.

use super::*;
use aws_sdk_bedrockruntime::types::{
    CacheDetail, ContentBlockDeltaEvent, ContentBlockStartEvent, ContentBlockStopEvent,
    ConverseStreamMetadataEvent, MessageStartEvent, MessageStopEvent, StopReason as SdkStop,
    ToolUseBlockDelta, ToolUseBlockStart,
};
use pretty_assertions::assert_eq;
use serde_json::json;

fn delta(index: i32, delta: ContentBlockDelta) -> SdkEvent {
    SdkEvent::ContentBlockDelta(
        ContentBlockDeltaEvent::builder()
            .content_block_index(index)
            .delta(delta)
            .build()
            .unwrap(),
    )
}

fn block_stop(index: i32) -> SdkEvent {
    SdkEvent::ContentBlockStop(
        ContentBlockStopEvent::builder()
            .content_block_index(index)
            .build()
            .unwrap(),
    )
}

fn feed_all(decoder: &mut ConverseDecoder, events: Vec<SdkEvent>) -> Vec<StreamEvent> {
    events
        .into_iter()
        .flat_map(|e| decoder.feed(e).unwrap())
        .collect()
}

#[test]
fn reasoning_text_and_tools_decode() {
    let mut decoder = ConverseDecoder::new("amazon.nova-pro-v1:0");
    let start = MessageStartEvent::builder()
        .role(ConversationRole::Assistant)
        .build()
        .unwrap();
    let tool = ToolUseBlockStart::builder()
        .tool_use_id("t1")
        .name("search")
        .build()
        .unwrap();
    let events = feed_all(
        &mut decoder,
        vec![
            SdkEvent::MessageStart(start),
            delta(
                0,
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text("hmm".into())),
            ),
            delta(
                0,
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature("sig".into())),
            ),
            block_stop(0),
            delta(
                1,
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::RedactedContent(Blob::new(
                    b"xy".to_vec(),
                ))),
            ),
            block_stop(1),
            delta(2, ContentBlockDelta::Text("Hi".into())),
            SdkEvent::ContentBlockStart(
                ContentBlockStartEvent::builder()
                    .content_block_index(3)
                    .start(ContentBlockStart::ToolUse(tool))
                    .build()
                    .unwrap(),
            ),
            delta(
                3,
                ContentBlockDelta::ToolUse(ToolUseBlockDelta::builder().input("{}").build().unwrap()),
            ),
            SdkEvent::MessageStop(
                MessageStopEvent::builder()
                    .stop_reason(SdkStop::MaxTokens)
                    .build()
                    .unwrap(),
            ),
        ],
    );
    assert_eq!(
        events,
        vec![
            StreamEvent::MessageStart {
                id: None,
                model: Some("amazon.nova-pro-v1:0".into())
            },
            StreamEvent::BlockStart {
                index: 0,
                block: BlockKind::Thinking
            },
            StreamEvent::ThinkingDelta {
                index: 0,
                thinking: "hmm".into()
            },
            StreamEvent::SignatureDelta {
                index: 0,
                signature: "sig".into()
            },
            StreamEvent::BlockStop { index: 0 },
            StreamEvent::BlockStart {
                index: 1,
                block: BlockKind::RedactedThinking { data: "eHk=".into() }
            },
            StreamEvent::BlockStop { index: 1 },
            StreamEvent::BlockStart {
                index: 2,
                block: BlockKind::Text
            },
            StreamEvent::TextDelta {
                index: 2,
                text: "Hi".into()
            },
            StreamEvent::BlockStart {
                index: 3,
                block: BlockKind::ToolUse {
                    id: "t1".into(),
                    name: "search".into()
                }
            },
            StreamEvent::ToolInputDelta {
                index: 3,
                partial_json: "{}".into()
            },
        ]
    );
    // Blocks left open are stopped before Stop.
    assert_eq!(
        decoder.end().unwrap(),
        vec![
            StreamEvent::BlockStop { index: 2 },
            StreamEvent::BlockStop { index: 3 },
            StreamEvent::Stop {
                reason: StopReason::MaxTokens,
                stop_sequence: None
            }
        ]
    );
}

#[test]
fn order_is_checked() {
    let mut decoder = ConverseDecoder::new("m");
    assert!(matches!(decoder.feed(block_stop(0)), Err(LlmError::Protocol(_))));
    let mut decoder = ConverseDecoder::new("m");
    decoder
        .feed(SdkEvent::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .unwrap(),
        ))
        .unwrap();
    let tool_input = ContentBlockDelta::ToolUse(ToolUseBlockDelta::builder().input("{").build().unwrap());
    assert!(matches!(
        decoder.feed(delta(0, tool_input)),
        Err(LlmError::Protocol(_))
    ));
    assert!(matches!(
        decoder.feed(delta(-1, ContentBlockDelta::Text("x".into()))),
        Err(LlmError::Protocol(_))
    ));
    assert!(matches!(decoder.end(), Err(LlmError::Protocol(_))));
}

#[test]
fn usage_splits_cache_writes_by_ttl() {
    let detail = |ttl, n| CacheDetail::builder().ttl(ttl).input_tokens(n).build().unwrap();
    let value = TokenUsage::builder()
        .input_tokens(10)
        .output_tokens(5)
        .total_tokens(0)
        .cache_read_input_tokens(7)
        .cache_write_input_tokens(100)
        .cache_details(detail(SdkCacheTtl::OneHour, 60))
        .cache_details(detail(SdkCacheTtl::FiveMinutes, 30))
        .build()
        .unwrap();
    let expected = Usage {
        input_tokens: 10,
        output_tokens: 5,
        cache_write_5m_tokens: 40,
        cache_write_1h_tokens: 60,
        cache_read_tokens: 7,
    };
    assert_eq!(usage(&value), expected);
    let mut decoder = ConverseDecoder::new("m");
    decoder
        .feed(SdkEvent::MessageStart(
            MessageStartEvent::builder()
                .role(ConversationRole::Assistant)
                .build()
                .unwrap(),
        ))
        .unwrap();
    let meta = ConverseStreamMetadataEvent::builder().usage(value).build();
    assert_eq!(
        decoder.feed(SdkEvent::Metadata(meta)).unwrap(),
        vec![StreamEvent::Usage(expected)]
    );
}

#[test]
fn request_mapping_rejects_what_converse_cannot_carry() {
    let request = |source: ImageSource| ModelRequest {
        model: "amazon.nova-pro-v1:0".into(),
        system: vec![],
        messages: vec![crate::Message {
            role: Role::User,
            content: vec![ContentBlock::Image { source }],
        }],
        tools: vec![],
        max_tokens: 10,
        temperature: None,
        stop_sequences: vec![],
        thinking_budget: None,
    };
    let bmp = ImageSource {
        media_type: "image/bmp".into(),
        data: "AAAA".into(),
    };
    assert!(matches!(
        converse_request(&request(bmp)),
        Err(LlmError::InvalidRequest { status: 400, .. })
    ));
    let garbage = ImageSource {
        media_type: "image/png".into(),
        data: "%%%".into(),
    };
    assert!(matches!(
        converse_request(&request(garbage)),
        Err(LlmError::InvalidRequest { .. })
    ));
    let ok = ImageSource {
        media_type: "image/jpeg".into(),
        data: "AAAA".into(),
    };
    let mapped = converse_request(&request(ok)).unwrap();
    assert_eq!(mapped.messages.len(), 1);
    assert_eq!(mapped.inference.max_tokens(), Some(10));
}

#[test]
fn json_becomes_documents() {
    let value = json!({"a": [1, -2, 2.5, "s", true, null], "b": {}});
    let Document::Object(map) = document(&value) else {
        panic!("not an object")
    };
    assert_eq!(
        map["a"],
        Document::Array(vec![
            Document::Number(Number::PosInt(1)),
            Document::Number(Number::NegInt(-2)),
            Document::Number(Number::Float(2.5)),
            Document::String("s".into()),
            Document::Bool(true),
            Document::Null,
        ])
    );
    assert_eq!(map["b"], Document::Object(HashMap::new()));
}
