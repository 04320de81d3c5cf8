//! Text embeddings: an [`Embedder`] turns texts into vectors, one per text and in their
//! order, for retrieval. Adapters speak the OpenAI-compatible `POST {base}/embeddings`
//! ([`OpenAiEmbedder`], also Ollama, vLLM, llama.cpp) and Gemini's `batchEmbedContents`
//! ([`GeminiEmbedder`]); [`ResilientEmbedder`](crate::ResilientEmbedder) adds retries,
//! breakers and fallback.
//!
//! Every adapter refuses, before sending anything, an input longer than
//! [`EmbedLimits::max_input_bytes`]; splits long lists into requests of at most
//! [`EmbedLimits::batch_size`] inputs; and refuses an answer with the wrong number of
//! vectors, vectors of different lengths (within an answer, or from the length configured
//! or seen first), empty or non-finite ones, or malformed JSON, as
//! [`LlmError::Malformed`]. Empty strings are sent like any other input (some providers
//! refuse them with a 400). Vectors come back as the provider made them: call
//! [`normalize`] before comparing them by dot product (Gemini's shortened vectors are not
//! unit length); [`cosine`] does not need it.

mod gemini;
mod openai;

use std::future::Future;
use std::sync::OnceLock;

use async_trait::async_trait;

pub use gemini::{GeminiEmbedConfig, GeminiEmbedder};
pub use openai::{OpenAiEmbedConfig, OpenAiEmbedder};

use crate::{LlmError, Usage};

/// Inputs per request when not configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 64;

/// What one adapter sends and reads at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedLimits {
    /// Inputs per request; longer lists are split. Kept within 1 and the provider's own
    /// limit (2048 for OpenAI, 100 for Gemini).
    pub batch_size: usize,
    /// The longest input, in bytes of UTF-8; a longer one fails the call before anything is
    /// sent. The default, 32 KiB, is about OpenAI's 8192 tokens of English text.
    pub max_input_bytes: usize,
    /// The largest answer body read. 64 inputs of 3072 floats take about 4 MiB as JSON.
    pub max_response_bytes: usize,
}

impl Default for EmbedLimits {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            max_input_bytes: 32 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The answer to one [`Embedder::embed`] call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in input order, all of one length.
    pub vectors: Vec<Vec<f32>>,
    /// The model that made them, as the provider names it: vectors of different models
    /// cannot be compared.
    pub model: String,
    /// Input tokens billed (`output_tokens` stays 0). Zero when the provider does not say,
    /// as Gemini's batch endpoint does not.
    pub usage: Usage,
}

impl Embeddings {
    #[must_use]
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The vectors' length; None when there are none.
    #[must_use]
    pub fn dimensions(&self) -> Option<usize> {
        self.vectors.first().map(Vec::len)
    }

    /// Adds the next batch's answer, which must be of the same model and length.
    fn append(&mut self, more: Self) -> Result<(), LlmError> {
        if let (Some(have), Some(got)) = (self.dimensions(), more.dimensions())
            && have != got
        {
            return Err(LlmError::Malformed(format!(
                "vectors of {got} dimensions after vectors of {have}"
            )));
        }
        if self.model.is_empty() {
            self.model = more.model;
        }
        self.usage.input_tokens = self
            .usage
            .input_tokens
            .saturating_add(more.usage.input_tokens);
        self.vectors.extend(more.vectors);
        Ok(())
    }
}

/// An embedding model: one provider, or a chain of them.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The provider's short name, for metrics and logs.
    fn provider(&self) -> &str;

    /// The length of every vector: configured, or seen in the first answer; None before
    /// that.
    fn dimensions(&self) -> Option<usize>;

    /// The most inputs one request carries; [`embed`](Self::embed) splits longer lists
    /// itself, and wrappers use this to retry one batch rather than all of them.
    fn max_batch(&self) -> usize {
        usize::MAX
    }

    /// One vector per input, in input order. No inputs: no call, and no vectors.
    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, LlmError>;
}

/// The cosine similarity of two vectors, in [-1, 1]; 0 when either is empty or all zeros,
/// their lengths differ, or they hold non-finite numbers.
#[must_use]
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut aa, mut bb) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norms = aa.sqrt() * bb.sqrt();
    let similarity = dot / norms;
    if norms == 0.0 || !similarity.is_finite() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation)] // in [-1, 1] once clamped
    let similarity = similarity.clamp(-1.0, 1.0) as f32;
    similarity
}

/// Scales `v` to unit length in place, so a dot product is the cosine. A vector of zeros,
/// or of non-finite numbers, is left as it is.
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return;
    }
    for x in v {
        #[allow(clippy::cast_possible_truncation)] // a component of a unit vector
        let scaled = (f64::from(*x) / norm) as f32;
        *x = scaled;
    }
}

/// Embeds `inputs` from `done.len()` on, `size` at a time, appending each answer to `done`;
/// on failure `done` keeps what the batches before had made.
pub(crate) async fn fill<'a, F, Fut>(
    inputs: &'a [String],
    size: usize,
    done: &mut Embeddings,
    mut call: F,
) -> Result<(), LlmError>
where
    F: FnMut(&'a [String]) -> Fut,
    Fut: Future<Output = Result<Embeddings, LlmError>>,
{
    let size = size.max(1);
    while done.len() < inputs.len() {
        let start = done.len();
        let end = start.saturating_add(size).min(inputs.len());
        let answer = call(&inputs[start..end]).await?;
        if answer.len() != end - start {
            return Err(wrong_count(end - start, answer.len()));
        }
        done.append(answer)?;
    }
    Ok(())
}

fn wrong_count(sent: usize, got: usize) -> LlmError {
    LlmError::Malformed(format!("{got} vectors for {sent} inputs"))
}

/// What every adapter does around its requests: limits, batching, checking answers, and
/// the vector length, configured or learnt from the first answer.
#[derive(Debug)]
struct Common {
    limits: EmbedLimits,
    configured: Option<usize>,
    learnt: OnceLock<usize>,
}

impl Common {
    fn new(mut limits: EmbedLimits, provider_max: usize, configured: Option<usize>) -> Self {
        limits.batch_size = limits.batch_size.clamp(1, provider_max);
        Self {
            limits,
            configured,
            learnt: OnceLock::new(),
        }
    }

    fn dimensions(&self) -> Option<usize> {
        self.configured.or_else(|| self.learnt.get().copied())
    }

    /// Checks the inputs, then sends them `batch_size` at a time through `request`.
    async fn embed<'a, F, Fut>(
        &self,
        inputs: &'a [String],
        request: F,
    ) -> Result<Embeddings, LlmError>
    where
        F: FnMut(&'a [String]) -> Fut,
        Fut: Future<Output = Result<Embeddings, LlmError>>,
    {
        if let Some((index, input)) = inputs
            .iter()
            .enumerate()
            .find(|(_, input)| input.len() > self.limits.max_input_bytes)
        {
            return Err(LlmError::BadRequest {
                status: 400,
                message: format!(
                    "input {index} is {} bytes long, over the limit of {}",
                    input.len(),
                    self.limits.max_input_bytes
                ),
            });
        }
        let mut done = Embeddings::default();
        fill(inputs, self.limits.batch_size, &mut done, request).await?;
        Ok(done)
    }

    /// Accepts one answer's vectors for `sent` inputs: the right count, all of one
    /// non-zero length (the configured or first-seen one), all finite.
    fn check(&self, vectors: &[Vec<f32>], sent: usize) -> Result<(), LlmError> {
        if vectors.len() != sent {
            return Err(wrong_count(sent, vectors.len()));
        }
        let Some(first) = vectors.first() else {
            return Ok(());
        };
        let expected = self.dimensions().unwrap_or(first.len());
        if expected == 0 {
            return Err(LlmError::Malformed("an empty vector".into()));
        }
        for (index, vector) in vectors.iter().enumerate() {
            if vector.len() != expected {
                return Err(LlmError::Malformed(format!(
                    "vector {index} has {} dimensions, not {expected}",
                    vector.len()
                )));
            }
            if !vector.iter().all(|x| x.is_finite()) {
                return Err(LlmError::Malformed(format!(
                    "vector {index} holds a non-finite number"
                )));
            }
        }
        // Two first answers racing with different lengths: the first to get here sets the
        // length every later answer must have.
        let _ = self.learnt.set(expected);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
