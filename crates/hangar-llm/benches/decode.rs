//! Decode throughput of each provider wire format, single-threaded, in memory.
//!
//! `cargo bench -p hangar-llm --bench decode` builds one large synthetic response per format
//! (by default 100,000 text deltas followed by one tool call streamed as 20,000 input fragments,
//! plus the start/stop events around them) and measures how many wire events per second one
//! thread turns into normalised [`StreamEvent`]s:
//!
//! - **Anthropic SSE** (`text/event-stream`, `event:`/`data:` lines);
//! - **OpenAI chat-completions SSE** (`data:` chunks, `[DONE]`);
//! - **Bedrock InvokeModelWithResponseStream**: AWS event-stream frames (CRC-checked, encoded
//!   with `aws-smithy-eventstream`) whose `{"bytes": "<base64>"}` payloads carry Anthropic events.
//!
//! Each format is compared with a **baseline measured in the same run**: parsing every event's
//! JSON payload into a `serde_json::Value` and nothing else, which is the least any decoder
//! must do. The rows in between split the cost: the decoder alone on pre-split payloads, the
//! SSE framing alone, and the full path from response bytes to events.
//!
//! The full SSE path uses `eventsource-stream`, as the providers do (`http::sse_events`),
//! fed one network chunk per event (a live stream) and, separately, 64 KiB chunks (a burst).
//! What is left out is the async driver (`providers::drive`, a `futures::stream::unfold` with a
//! `tokio::select!` per item) and the HTTP client.
//!
//! The Bedrock decode path in Hangar runs inside the AWS SDK (`EventReceiver` with its private
//! `ResponseStreamUnmarshaller`), which is not reachable as a pure function. This bench therefore
//! rebuilds it from the same public pieces: `aws_smithy_eventstream`'s `MessageFrameDecoder`
//! (prelude and message CRCs) and `parse_response_headers`, the `{"bytes"}` JSON (here with
//! serde_json; the SDK uses its own `aws-smithy-json` tokenizer), base64 (here the `base64`
//! crate; the SDK uses `base64-simd`), the UTF-8 check, and then the same `AnthropicDecoder` as
//! Hangar's `InvokeDecoder`.
//!
//! Environment: `HANGAR_BENCH_TEXT_DELTAS` (default 100000), `HANGAR_BENCH_TOOL_DELTAS` (default
//! 20000), `HANGAR_BENCH_RUNS` (timed runs per row after one untimed warm-up, default 5; the
//! median is reported). See docs/benchmarks.md, "Model layer".

#![expect(clippy::print_stdout, reason = "a benchmark reports its results on stdout")]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_eventstream::smithy::parse_response_headers;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use hangar_llm::{AnthropicDecoder, OpenAiDecoder, StreamEvent};
use serde::Deserialize;
use serde_json::Value;

/// Chunk size of the "burst" rows: what a client may read at once from a fast or buffered body.
const BURST_CHUNK: usize = 64 * 1024;

struct Config {
    text_deltas: usize,
    tool_deltas: usize,
    runs: usize,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={raw:?} is not a whole number")),
        _ => Ok(default),
    }
}

impl Config {
    fn from_env() -> Result<Self> {
        Ok(Self {
            text_deltas: env_usize("HANGAR_BENCH_TEXT_DELTAS", 100_000)?.max(1),
            tool_deltas: env_usize("HANGAR_BENCH_TOOL_DELTAS", 20_000)?.max(2),
            runs: env_usize("HANGAR_BENCH_RUNS", 5)?.max(1),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic content.

/// A small deterministic generator (xorshift64*), so every run decodes the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "model", "streams", "tokens", "to", "a", "client", "while", "Hangar", "stores", "each", "answer",
    "and", "bills", "usage", "per", "tenant", "request", "latency", "of", "is", "measured", "in", "café",
    "naïve", "über", "—", "résumé", "data", "fn", "let", "value", "returns", "error", "quickly",
];

/// One text delta as a model streams it: one to three words, sometimes punctuation, a quote, a
/// newline or non-ASCII text (so that JSON escaping and UTF-8 are exercised).
fn text_delta(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..=rng.below(3) {
        text.push(' ');
        text.push_str(WORDS[rng.below(WORDS.len())]);
    }
    match rng.below(20) {
        0 => text.push_str(".\n\n"),
        1 => text.push_str(", \"quoted\""),
        2 => text.push(','),
        _ => {}
    }
    text
}

/// The tool input's fragments: `{"path": ..., "content": "` + escaped source code + `"}`,
/// `count` fragments in all, 8 to 24 characters each (the middle ones).
fn tool_fragments(rng: &mut Rng, count: usize) -> Result<Vec<String>> {
    const CODE: &str = "fn main() {\n    let greeting = \"hello, world\";\n    println!(\"{greeting}\");\n}\n\
                        // Tabs\tand \\backslashes\\ and unicode: naïve café.\n";
    let escaped = serde_json::to_string(CODE)?;
    let body = escaped.trim_matches('"');
    let chars: Vec<char> = body.chars().collect();
    let mut fragments = Vec::with_capacity(count);
    fragments.push(r#"{"path": "src/main.rs", "content": ""#.to_owned());
    let mut at = 0;
    while fragments.len() + 1 < count {
        let mut len = 8 + rng.below(17);
        let mut fragment = String::new();
        while len > 0 {
            let c = chars[at % chars.len()];
            at += 1;
            len -= 1;
            fragment.push(c);
            // Never end a fragment inside an escape sequence (a real stream may, but then the
            // fragments would not be plain JSON string content in this synthetic input).
            if c == '\\' && len == 0 {
                len = 1;
            }
        }
        fragments.push(fragment);
    }
    fragments.push("\"}".to_owned());
    Ok(fragments)
}

fn json_string(text: &str) -> Result<String> {
    Ok(serde_json::to_string(text)?)
}

// ---------------------------------------------------------------------------------------------
// Transcripts.

/// One response in every wire format, with what its decoding must yield.
struct Transcripts {
    text_deltas: usize,
    tool_deltas: usize,
    /// Anthropic events: (SSE event name, JSON data).
    anthropic: Vec<(&'static str, String)>,
    /// The Anthropic SSE body, one chunk per event.
    anthropic_sse: Vec<Bytes>,
    /// OpenAI `data:` payloads, `[DONE]` last.
    openai: Vec<String>,
    openai_sse: Vec<Bytes>,
    /// Bedrock event-stream frames, one per Anthropic event except `ping`.
    bedrock: Vec<Bytes>,
    /// The JSON payloads inside the Bedrock frames (the base64-decoded `bytes`).
    bedrock_inner: Vec<String>,
}

impl Transcripts {
    fn build(config: &Config) -> Result<Self> {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let texts: Vec<String> = (0..config.text_deltas).map(|_| text_delta(&mut rng)).collect();
        let fragments = tool_fragments(&mut rng, config.tool_deltas)?;
        let output_tokens = texts.len() + fragments.len();

        // Anthropic Messages API, field order as the API sends it.
        let mut anthropic: Vec<(&'static str, String)> =
            Vec::with_capacity(texts.len() + fragments.len() + 8);
        anthropic.push((
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01BenchBenchBenchBench","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":0,"cache_read_input_tokens":800,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}"#.to_owned(),
        ));
        anthropic.push(("ping", r#"{"type": "ping"}"#.to_owned()));
        anthropic.push((
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
                .to_owned(),
        ));
        for text in &texts {
            anthropic.push((
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{}}}}}"#,
                    json_string(text)?
                ),
            ));
        }
        anthropic.push((
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#.to_owned(),
        ));
        anthropic.push((
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01BenchBenchBench","name":"write_file","input":{}}}"#.to_owned(),
        ));
        for fragment in &fragments {
            anthropic.push((
                "content_block_delta",
                format!(
                    r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":{}}}}}"#,
                    json_string(fragment)?
                ),
            ));
        }
        anthropic.push((
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#.to_owned(),
        ));
        anthropic.push((
            "message_delta",
            format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"tool_use","stop_sequence":null}},"usage":{{"output_tokens":{output_tokens}}}}}"#
            ),
        ));
        anthropic.push(("message_stop", r#"{"type":"message_stop"}"#.to_owned()));
        let anthropic_sse = anthropic
            .iter()
            .map(|(name, data)| Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
            .collect();

        // OpenAI chat completions with `stream_options.include_usage`, as OpenAI sends them.
        let head = r#"{"id":"chatcmpl-Bench0123456789","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":"#;
        let mut openai = Vec::with_capacity(texts.len() + fragments.len() + 6);
        openai.push(format!(
            r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ));
        for text in &texts {
            openai.push(format!(
                r#"{head}[{{"index":0,"delta":{{"content":{}}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#,
                json_string(text)?
            ));
        }
        openai.push(format!(
            r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_Bench0123","type":"function","function":{{"name":"write_file","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ));
        for fragment in &fragments {
            openai.push(format!(
                r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":{}}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#,
                json_string(fragment)?
            ));
        }
        openai.push(format!(
            r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":null}}"#
        ));
        openai.push(format!(
            r#"{head}[],"usage":{{"prompt_tokens":2000,"completion_tokens":{output_tokens},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":800}}}}}}"#,
            2000 + output_tokens
        ));
        openai.push("[DONE]".to_owned());
        let openai_sse = openai
            .iter()
            .map(|data| Bytes::from(format!("data: {data}\n\n")))
            .collect();

        // Bedrock: the Anthropic events without `ping`; `message_stop` carries the invocation
        // metrics, as on Bedrock.
        let mut bedrock_inner: Vec<String> = anthropic
            .iter()
            .filter(|(name, _)| *name != "ping")
            .map(|(_, data)| data.clone())
            .collect();
        if let Some(last) = bedrock_inner.last_mut() {
            *last = r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1200,"outputTokenCount":120000,"invocationLatency":4000,"firstByteLatency":300}}"#.to_owned();
        }
        let bedrock = bedrock_inner
            .iter()
            .map(|json| bedrock_frame(json))
            .collect::<Result<Vec<_>>>()?;

        Ok(Self {
            text_deltas: texts.len(),
            tool_deltas: fragments.len(),
            anthropic,
            anthropic_sse,
            openai,
            openai_sse,
            bedrock,
            bedrock_inner,
        })
    }
}

/// One InvokeModelWithResponseStream `chunk` frame, as Bedrock (and the fake server) sends it.
fn bedrock_frame(json: &str) -> Result<Bytes> {
    let payload = format!(r#"{{"bytes":"{}"}}"#, BASE64.encode(json));
    let message = [
        (":event-type", "chunk"),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
    .into_iter()
    .fold(Message::new(payload.into_bytes()), |message, (name, value)| {
        message.add_header(Header::new(name, HeaderValue::String(value.into())))
    });
    let mut buffer = Vec::new();
    write_message_to(&message, &mut buffer).context("encoding an event-stream frame")?;
    Ok(Bytes::from(buffer))
}

/// `chunks` re-cut into pieces of `size` bytes (the last may be shorter).
fn rechunk(chunks: &[Bytes], size: usize) -> Vec<Bytes> {
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let all = Bytes::from(all);
    (0..all.len())
        .step_by(size)
        .map(|at| all.slice(at..(at + size).min(all.len())))
        .collect()
}

fn total_bytes(chunks: &[Bytes]) -> usize {
    chunks.iter().map(Bytes::len).sum()
}

// ---------------------------------------------------------------------------------------------
// What a decode produced, checked against the transcript.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    /// Wire events (SSE events or frames) consumed.
    wire: usize,
    /// Normalised events produced (0 for rows that do not decode).
    events: usize,
    text_deltas: usize,
    tool_deltas: usize,
    stopped: bool,
    /// Bytes of text seen, so that nothing can be optimised away.
    checksum: usize,
}

impl Tally {
    fn add(&mut self, events: &[StreamEvent]) {
        self.events += events.len();
        for event in events {
            match event {
                StreamEvent::TextDelta { text, .. } => {
                    self.text_deltas += 1;
                    self.checksum += text.len();
                }
                StreamEvent::ToolInputDelta { partial_json, .. } => {
                    self.tool_deltas += 1;
                    self.checksum += partial_json.len();
                }
                StreamEvent::Stop { .. } => self.stopped = true,
                _ => {}
            }
        }
    }

    /// A decoding row must have produced every delta and the final stop.
    fn check(&self, transcripts: &Transcripts, what: &str) -> Result<()> {
        ensure!(
            self.text_deltas == transcripts.text_deltas
                && self.tool_deltas == transcripts.tool_deltas
                && self.stopped,
            "{what}: decoded {} text deltas, {} tool deltas, stop {} (expected {}, {}, true)",
            self.text_deltas,
            self.tool_deltas,
            self.stopped,
            transcripts.text_deltas,
            transcripts.tool_deltas
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The measured operations. Each consumes a whole transcript and returns its tally.

fn parse_json_payloads<'a>(payloads: impl Iterator<Item = &'a str>) -> Result<Tally> {
    let mut tally = Tally::default();
    for data in payloads {
        tally.wire += 1;
        if data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(data)?;
        tally.checksum += usize::from(value.is_object());
        black_box(value);
    }
    Ok(tally)
}

fn anthropic_presplit(events: &[(&'static str, String)]) -> Result<Tally> {
    let mut decoder = AnthropicDecoder::new();
    let mut tally = Tally::default();
    for (name, data) in events {
        tally.wire += 1;
        tally.add(&decoder.feed(name, data)?);
    }
    decoder.finish()?;
    Ok(tally)
}

fn openai_presplit(payloads: &[String]) -> Result<Tally> {
    let mut decoder = OpenAiDecoder::new();
    let mut tally = Tally::default();
    for data in payloads {
        tally.wire += 1;
        tally.add(&decoder.feed(data)?);
    }
    decoder.finish()?;
    Ok(tally)
}

/// The least SSE framing can do: find each blank line, then the `event:` and `data:` fields.
/// (No multi-line data, comments, `id`/`retry` or CR line ends; enough for these transcripts.)
fn minimal_sse_split(chunks: &[Bytes]) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut buffer: Vec<u8> = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = buffer[start..].windows(2).position(|w| w == b"\n\n") {
            let block = std::str::from_utf8(&buffer[start..start + end])?;
            let (mut event, mut data) = ("message", "");
            for line in block.split('\n') {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = name;
                } else if let Some(payload) = line.strip_prefix("data: ") {
                    data = payload;
                }
            }
            tally.wire += 1;
            tally.checksum += event.len() + data.len();
            start += end + 2;
        }
        buffer.drain(..start);
    }
    Ok(tally)
}

/// Runs `chunks` through `eventsource-stream` as `http::sse_events` does, handing each event to
/// `on_event` (the transport is an in-memory stream that is always ready).
fn eventsource(chunks: &[Bytes], mut on_event: impl FnMut(&str, &str) -> Result<()>) -> Result<usize> {
    let source = futures::stream::iter(chunks.iter().cloned().map(Ok::<Bytes, Infallible>));
    let mut count = 0;
    for item in futures::executor::block_on_stream(source.eventsource()) {
        let event = item.map_err(|e| anyhow!("event stream: {e}"))?;
        count += 1;
        on_event(&event.event, &event.data)?;
    }
    Ok(count)
}

fn eventsource_only(chunks: &[Bytes]) -> Result<Tally> {
    let mut tally = Tally::default();
    tally.wire = eventsource(chunks, |event, data| {
        tally.checksum += event.len() + data.len();
        Ok(())
    })?;
    Ok(tally)
}

fn anthropic_wire(chunks: &[Bytes]) -> Result<Tally> {
    let mut decoder = AnthropicDecoder::new();
    let mut tally = Tally::default();
    tally.wire = eventsource(chunks, |event, data| {
        tally.add(&decoder.feed(event, data)?);
        Ok(())
    })?;
    decoder.finish()?;
    Ok(tally)
}

fn openai_wire(chunks: &[Bytes]) -> Result<Tally> {
    let mut decoder = OpenAiDecoder::new();
    let mut tally = Tally::default();
    tally.wire = eventsource(chunks, |_, data| {
        tally.add(&decoder.feed(data)?);
        Ok(())
    })?;
    decoder.finish()?;
    Ok(tally)
}

/// Bedrock frames to messages: prelude, headers, payload, both CRCs.
fn bedrock_frames(chunks: &[Bytes], mut on_message: impl FnMut(Message) -> Result<()>) -> Result<usize> {
    let mut decoder = MessageFrameDecoder::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut count = 0;
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut buf: &[u8] = &pending;
        // `Incomplete` may have consumed a frame's prelude: the decoder keeps it for the next call.
        while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buf)? {
            count += 1;
            on_message(message)?;
        }
        let consumed = pending.len() - buf.len();
        pending.drain(..consumed);
    }
    ensure!(
        pending.is_empty(),
        "{} bytes of a partial frame left",
        pending.len()
    );
    Ok(count)
}

fn bedrock_frames_only(chunks: &[Bytes]) -> Result<Tally> {
    let mut tally = Tally::default();
    tally.wire = bedrock_frames(chunks, |message| {
        tally.checksum += message.payload().len() + message.headers().len();
        Ok(())
    })?;
    Ok(tally)
}

#[derive(Deserialize)]
struct PayloadPart<'a> {
    #[serde(borrow)]
    bytes: &'a str,
}

/// What the SDK's unmarshaller and Hangar's `InvokeDecoder` do with each frame.
fn bedrock_wire(chunks: &[Bytes]) -> Result<Tally> {
    let mut decoder = AnthropicDecoder::new();
    let mut tally = Tally::default();
    let mut scratch = Vec::new();
    tally.wire = bedrock_frames(chunks, |message| {
        let headers = parse_response_headers(&message)?;
        if headers.message_type.as_str() != "event" || headers.smithy_type.as_str() != "chunk" {
            bail!(
                "unexpected frame {:?}/{:?}",
                headers.message_type,
                headers.smithy_type
            );
        }
        let part: PayloadPart<'_> = serde_json::from_slice(message.payload())?;
        scratch.clear();
        BASE64.decode_vec(part.bytes, &mut scratch)?;
        let data = std::str::from_utf8(&scratch)?;
        tally.add(&decoder.feed("", data)?);
        Ok(())
    })?;
    decoder.finish()?;
    Ok(tally)
}

// ---------------------------------------------------------------------------------------------
// Timing and the report.

struct Row {
    name: String,
    wire: usize,
    bytes: Option<usize>,
    median: Duration,
    best: Duration,
}

impl Row {
    fn ns_per_event(&self) -> f64 {
        self.median.as_secs_f64() * 1e9 / self.wire.max(1) as f64
    }
}

/// One untimed warm-up, then `runs` timed runs; the tally of every run must be the same.
fn measure(
    config: &Config,
    name: &str,
    bytes: Option<usize>,
    mut run: impl FnMut() -> Result<Tally>,
    check: impl Fn(&Tally) -> Result<()>,
) -> Result<Row> {
    let first = run().with_context(|| name.to_owned())?;
    check(&first)?;
    let mut times = Vec::with_capacity(config.runs);
    for _ in 0..config.runs {
        let started = Instant::now();
        let tally = run().with_context(|| name.to_owned())?;
        times.push(started.elapsed());
        ensure!(black_box(tally) == first, "{name}: runs disagree");
    }
    times.sort_unstable();
    Ok(Row {
        name: name.to_owned(),
        wire: first.wire,
        bytes,
        median: times[times.len() / 2],
        best: times[0],
    })
}

fn print_group(title: &str, rows: &[Row]) {
    println!("{title}");
    let baseline = rows.first().map_or(0.0, Row::ns_per_event);
    for row in rows {
        let ns = row.ns_per_event();
        let best_ns = row.best.as_secs_f64() * 1e9 / row.wire.max(1) as f64;
        let mib_s = row.bytes.map_or_else(
            || "-".to_owned(),
            |b| format!("{:.0}", b as f64 / row.median.as_secs_f64() / (1024.0 * 1024.0)),
        );
        let ratio = if baseline > 0.0 { ns / baseline } else { 0.0 };
        println!(
            "  {:<58} {:>8} {:>9.0} {:>9.0} {:>12.0} {:>7} {:>7.2}x",
            row.name,
            row.wire,
            ns,
            best_ns,
            1e9 / ns,
            mib_s,
            ratio
        );
    }
    println!();
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    println!("hangar-llm decode benchmark (single thread, in memory, release build)");
    let started = Instant::now();
    let t = Transcripts::build(&config)?;
    let anthropic_burst = rechunk(&t.anthropic_sse, BURST_CHUNK);
    let openai_burst = rechunk(&t.openai_sse, BURST_CHUNK);
    let bedrock_burst = rechunk(&t.bedrock, BURST_CHUNK);
    let (a_bytes, o_bytes, b_bytes) = (
        total_bytes(&t.anthropic_sse),
        total_bytes(&t.openai_sse),
        total_bytes(&t.bedrock),
    );
    println!(
        "  transcript: {} text deltas + {} tool-input deltas | Anthropic SSE {} events, {:.1} MiB | \
         OpenAI SSE {} events, {:.1} MiB | Bedrock {} frames, {:.1} MiB (built in {:.1} s)",
        t.text_deltas,
        t.tool_deltas,
        t.anthropic.len(),
        a_bytes as f64 / 1048576.0,
        t.openai.len(),
        o_bytes as f64 / 1048576.0,
        t.bedrock.len(),
        b_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  each row: median of {} timed runs over the whole transcript after 1 warm-up; \"events\" are \
         wire events (SSE events or frames)",
        config.runs
    );
    println!(
        "  machine: {} cores available; this bench uses one thread",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "  {:<58} {:>8} {:>9} {:>9} {:>12} {:>7} {:>8}",
        "scenario", "events", "ns/event", "best ns", "events/s", "MiB/s", "vs base"
    );
    println!();

    let transcripts = &t;
    let decodes = |what: &'static str| move |tally: &Tally| tally.check(transcripts, what);
    let frames = |expected: usize| {
        move |tally: &Tally| {
            ensure!(
                tally.wire == expected,
                "framed {} events, expected {expected}",
                tally.wire
            );
            Ok(())
        }
    };

    let anthropic_rows = vec![
        measure(
            &config,
            "baseline: serde_json::Value parse of each data payload",
            None,
            || parse_json_payloads(t.anthropic.iter().map(|(_, d)| d.as_str())),
            frames(t.anthropic.len()),
        )?,
        measure(
            &config,
            "AnthropicDecoder::feed (pre-split events)",
            None,
            || anthropic_presplit(&t.anthropic),
            decodes("AnthropicDecoder"),
        )?,
        measure(
            &config,
            "SSE framing only: minimal split on blank lines",
            Some(a_bytes),
            || minimal_sse_split(&t.anthropic_sse),
            frames(t.anthropic.len()),
        )?,
        measure(
            &config,
            "SSE framing only: eventsource-stream, 1 event/chunk",
            Some(a_bytes),
            || eventsource_only(&t.anthropic_sse),
            frames(t.anthropic.len()),
        )?,
        measure(
            &config,
            "full: eventsource-stream + AnthropicDecoder, 1 event/chunk",
            Some(a_bytes),
            || anthropic_wire(&t.anthropic_sse),
            decodes("Anthropic wire"),
        )?,
        measure(
            &config,
            "full: eventsource-stream + AnthropicDecoder, 64 KiB chunks",
            Some(a_bytes),
            || anthropic_wire(&anthropic_burst),
            decodes("Anthropic wire (burst)"),
        )?,
    ];
    print_group("Anthropic Messages SSE", &anthropic_rows);

    let openai_rows = vec![
        measure(
            &config,
            "baseline: serde_json::Value parse of each data payload",
            None,
            || parse_json_payloads(t.openai.iter().map(String::as_str)),
            frames(t.openai.len()),
        )?,
        measure(
            &config,
            "OpenAiDecoder::feed (pre-split payloads)",
            None,
            || openai_presplit(&t.openai),
            decodes("OpenAiDecoder"),
        )?,
        measure(
            &config,
            "SSE framing only: eventsource-stream, 1 event/chunk",
            Some(o_bytes),
            || eventsource_only(&t.openai_sse),
            frames(t.openai.len()),
        )?,
        measure(
            &config,
            "full: eventsource-stream + OpenAiDecoder, 1 event/chunk",
            Some(o_bytes),
            || openai_wire(&t.openai_sse),
            decodes("OpenAI wire"),
        )?,
        measure(
            &config,
            "full: eventsource-stream + OpenAiDecoder, 64 KiB chunks",
            Some(o_bytes),
            || openai_wire(&openai_burst),
            decodes("OpenAI wire (burst)"),
        )?,
    ];
    print_group("OpenAI chat-completions SSE", &openai_rows);

    let bedrock_rows = vec![
        measure(
            &config,
            "baseline: serde_json::Value parse of each inner JSON event",
            None,
            || parse_json_payloads(t.bedrock_inner.iter().map(String::as_str)),
            frames(t.bedrock.len()),
        )?,
        measure(
            &config,
            "frames only: MessageFrameDecoder (CRCs), 1 frame/chunk",
            Some(b_bytes),
            || bedrock_frames_only(&t.bedrock),
            frames(t.bedrock.len()),
        )?,
        measure(
            &config,
            "full: frames + base64 + AnthropicDecoder, 1 frame/chunk",
            Some(b_bytes),
            || bedrock_wire(&t.bedrock),
            decodes("Bedrock wire"),
        )?,
        measure(
            &config,
            "full: frames + base64 + AnthropicDecoder, 64 KiB chunks",
            Some(b_bytes),
            || bedrock_wire(&bedrock_burst),
            decodes("Bedrock wire (burst)"),
        )?,
    ];
    print_group(
        "Bedrock InvokeModelWithResponseStream (event-stream frames)",
        &bedrock_rows,
    );

    println!("full decode path per wire event (median; the target budget is 1 ms = 1,000,000 ns per event):");
    for (format, row) in [
        ("Anthropic SSE", anthropic_rows.get(4)),
        ("OpenAI SSE", openai_rows.get(3)),
        ("Bedrock frames", bedrock_rows.get(2)),
    ] {
        if let Some(row) = row {
            println!(
                "  {format:<15} {:>7.0} ns/event  {:>10.0} events/s on one core  ({:.4} % of the budget)",
                row.ns_per_event(),
                1e9 / row.ns_per_event(),
                row.ns_per_event() / 1e6 * 100.0
            );
        }
    }
    Ok(())
}
