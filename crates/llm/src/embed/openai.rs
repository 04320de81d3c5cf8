//! OpenAI embeddings and the servers that copy them (Ollama, vLLM, llama.cpp, LM Studio):
//! `POST {base}/embeddings` with `{"model", "input": [...]}` and a bearer key; the answer's
//! `data[].embedding` come with `data[].index`, which decides their order, and
//! `usage.prompt_tokens`.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{Common, EmbedLimits, Embedder, Embeddings};
use crate::http::{self, HttpSettings};
use crate::{LlmError, Usage};

/// OpenAI refuses more inputs than this in one request.
const MAX_INPUTS: usize = 2048;

#[derive(Clone, Debug)]
pub struct OpenAiEmbedConfig {
    /// The provider's label in metrics and logs.
    pub name: String,
    /// Up to and including `/v1`, as for chat.
    pub base_url: String,
    /// None for local servers that take no key.
    pub api_key: Option<SecretString>,
    pub model: String,
    /// Asks for vectors of this length (`dimensions`: `text-embedding-3` and later; many
    /// compatible servers refuse it) and refuses answers of another. None sends nothing and
    /// takes the length of the first answer.
    pub dimensions: Option<usize>,
    pub limits: EmbedLimits,
    pub http: HttpSettings,
}

impl OpenAiEmbedConfig {
    /// OpenAI itself (`text-embedding-3-small`...).
    #[must_use]
    pub fn openai(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            name: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: Some(api_key),
            model: model.into(),
            dimensions: None,
            limits: EmbedLimits::default(),
            http: HttpSettings::default(),
        }
    }

    /// A compatible server at `base_url` (for example `http://127.0.0.1:11434/v1`).
    #[must_use]
    pub fn compatible(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key: None,
            model: model.into(),
            dimensions: None,
            limits: EmbedLimits::default(),
            http: HttpSettings::default(),
        }
    }
}

pub struct OpenAiEmbedder {
    config: OpenAiEmbedConfig,
    client: reqwest::Client,
    url: String,
    common: Common,
}

impl OpenAiEmbedder {
    /// # Errors
    /// The HTTP client cannot be built (no TLS provider installed).
    pub fn new(config: OpenAiEmbedConfig) -> Result<Self, LlmError> {
        let client = http::client(&config.http)?;
        let url = format!("{}/embeddings", config.base_url.trim_end_matches('/'));
        let common = Common::new(config.limits, MAX_INPUTS, config.dimensions);
        Ok(Self {
            config,
            client,
            url,
            common,
        })
    }

    /// One request, for at most a batch of inputs.
    async fn request(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        let mut body = json!({"model": self.config.model, "input": inputs});
        if let Some(dimensions) = self.config.dimensions {
            body["dimensions"] = json!(dimensions);
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let answer: Answer = http::send_json(
            request,
            &self.config.http,
            self.common.limits.max_response_bytes,
            None,
        )
        .await?;
        let vectors = in_order(answer.data)?;
        self.common.check(&vectors, inputs.len())?;
        Ok(Embeddings {
            vectors,
            model: answer
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| self.config.model.clone()),
            usage: Usage {
                input_tokens: answer.usage.and_then(|u| u.prompt_tokens).unwrap_or(0),
                ..Usage::default()
            },
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Datum>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Datum {
    /// Some compatible servers leave it out; their list order is the input order then.
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: Option<u64>,
}

/// The vectors in input order: by `index` when the server gives them (each of `0..n` exactly
/// once), else as listed.
fn in_order(mut data: Vec<Datum>) -> Result<Vec<Vec<f32>>, LlmError> {
    let indexed = data.iter().filter(|d| d.index.is_some()).count();
    if indexed == data.len() {
        data.sort_by_key(|d| d.index);
        if let Some((position, datum)) = data
            .iter()
            .enumerate()
            .find(|(position, d)| d.index != Some(*position))
        {
            return Err(LlmError::Malformed(format!(
                "embedding index {} where {position} was expected",
                datum.index.unwrap_or_default()
            )));
        }
    } else if indexed != 0 {
        return Err(LlmError::Malformed(
            "some embeddings have an index and some do not".into(),
        ));
    }
    Ok(data.into_iter().map(|d| d.embedding).collect())
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn provider(&self) -> &str {
        &self.config.name
    }

    fn dimensions(&self) -> Option<usize> {
        self.common.dimensions()
    }

    fn max_batch(&self) -> usize {
        self.common.limits.batch_size
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        self.common.embed(inputs, |batch| self.request(batch)).await
    }
}
