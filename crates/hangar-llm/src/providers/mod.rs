//! The concrete [`ModelProvider`](crate::ModelProvider)s: the Anthropic Messages API, OpenAI-compatible
//! chat completions and AWS Bedrock. This module holds what they share: the driver that turns a
//! provider's raw stream into the normalised [`EventStream`] while honouring cancellation.
//!
//! Every provider is split into a wire layer (request encoding and a pure, synchronous stream
//! decoder that tests feed recorded transcripts) and a thin transport layer that sends the request
//! and pumps the response through [`drive`].

mod anthropic;
mod anthropic_stream;
mod bedrock;
mod bedrock_converse;
mod http;
mod openai;
mod openai_stream;

use std::collections::VecDeque;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;

use crate::{EventStream, LlmError, StreamEvent};

pub use anthropic::{AnthropicConfig, AnthropicProvider};
pub use anthropic_stream::AnthropicDecoder;
pub use bedrock::{BedrockConfig, BedrockCredentials, BedrockProvider};
pub use openai::{OpenAiConfig, OpenAiProvider};
pub use openai_stream::OpenAiDecoder;

/// Turns the items of one provider's raw response stream into normalised events.
pub(crate) trait RawDecoder: Send + 'static {
    type Item: Send + 'static;

    /// Decodes one raw item. An `Err` ends the stream (after nothing else).
    fn decode(&mut self, item: Self::Item) -> Result<Vec<StreamEvent>, LlmError>;

    /// True once the response's final event was decoded: the driver stops reading (and drops
    /// the connection) once the decoded events are delivered.
    fn is_finished(&self) -> bool;

    /// The raw stream ended. Returns the closing events, or `Err` if the response was incomplete.
    fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError>;
}

struct Driver<D: RawDecoder> {
    source: Option<BoxStream<'static, Result<D::Item, LlmError>>>,
    decoder: D,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    cancel: CancellationToken,
    over: bool,
}

impl<D: RawDecoder> Driver<D> {
    fn queue(&mut self, decoded: Result<Vec<StreamEvent>, LlmError>) {
        match decoded {
            Ok(events) => self.pending.extend(events.into_iter().map(Ok)),
            Err(error) => {
                self.pending.push_back(Err(error));
                self.source = None;
            }
        }
    }
}

/// Pumps `source` through `decoder` into an [`EventStream`]. The stream ends after the first
/// `Err` item, after the decoder's final event, or with `Err(Cancelled)` as soon as `cancel` fires;
/// in every case the source (and with it the connection) is dropped.
pub(crate) fn drive<D: RawDecoder>(
    source: BoxStream<'static, Result<D::Item, LlmError>>,
    decoder: D,
    cancel: CancellationToken,
) -> EventStream {
    let driver = Driver {
        source: Some(source),
        decoder,
        pending: VecDeque::new(),
        cancel,
        over: false,
    };
    Box::pin(futures::stream::unfold(driver, |mut st| async move {
        loop {
            if st.over {
                return None;
            }
            if st.cancel.is_cancelled() {
                st.over = true;
                st.source = None;
                st.pending.clear();
                return Some((Err(LlmError::Cancelled), st));
            }
            if let Some(item) = st.pending.pop_front() {
                if item.is_err() {
                    st.over = true;
                    st.source = None;
                }
                return Some((item, st));
            }
            let source = st.source.as_mut()?;
            let cancel = st.cancel.clone();
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => continue,
                next = source.next() => next,
            };
            match next {
                Some(Ok(raw)) => {
                    let decoded = st.decoder.decode(raw);
                    st.queue(decoded);
                    if st.decoder.is_finished() {
                        st.source = None;
                    }
                }
                Some(Err(error)) => st.queue(Err(error)),
                None => {
                    st.source = None;
                    let closing = st.decoder.end();
                    st.queue(closing);
                }
            }
        }
    }))
}

/// Races `future` against `cancel`, so that a call waiting for response headers can be abandoned.
pub(crate) async fn cancellable<T>(
    cancel: &CancellationToken,
    future: impl Future<Output = Result<T, LlmError>>,
) -> Result<T, LlmError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(LlmError::Cancelled),
        result = future => result,
    }
}
