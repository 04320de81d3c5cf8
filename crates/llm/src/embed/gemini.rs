//! Gemini embeddings: `POST {base}/v1beta/models/{model}:batchEmbedContents` with the key in
//! an `x-goog-api-key` header, one `{"model": "models/{model}", "content": {"parts":
//! [{"text"}]}}` request per input; the answer's `embeddings[].values` are in request order.
//! Google takes at most 100 requests per batch and says nothing of tokens.

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Common, EmbedLimits, Embedder, Embeddings};
use crate::http::{self, HttpSettings};
use crate::{LlmError, Usage};

/// Google refuses more requests than this in one batch ("at most 100 requests can be in one
/// batch").
const MAX_INPUTS: usize = 100;

#[derive(Clone, Debug)]
pub struct GeminiEmbedConfig {
    /// The provider's label in metrics and logs.
    pub name: String,
    /// Without the API version (`https://generativelanguage.googleapis.com`).
    pub base_url: String,
    pub api_key: SecretString,
    /// `gemini-embedding-001`; a `models/` prefix is accepted.
    pub model: String,
    /// Asks for vectors this long (`outputDimensionality`, which keeps the first values:
    /// [`normalize`](super::normalize) them before dot products) and refuses answers of
    /// another. None sends nothing and takes the length of the first answer.
    pub dimensions: Option<usize>,
    /// `RETRIEVAL_DOCUMENT`, `RETRIEVAL_QUERY`, `SEMANTIC_SIMILARITY`...: what the vectors
    /// are for. None leaves it to the model. Documents and the queries that search them
    /// are embedded with one embedder each when this is set.
    pub task_type: Option<String>,
    pub limits: EmbedLimits,
    pub http: HttpSettings,
}

impl GeminiEmbedConfig {
    /// Google's Generative Language API.
    #[must_use]
    pub fn new(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            name: "gemini".into(),
            base_url: "https://generativelanguage.googleapis.com".into(),
            api_key,
            model: model.into(),
            dimensions: None,
            task_type: None,
            limits: EmbedLimits::default(),
            http: HttpSettings::default(),
        }
    }
}

pub struct GeminiEmbedder {
    config: GeminiEmbedConfig,
    client: reqwest::Client,
    url: String,
    /// Without the `models/` prefix.
    model: String,
    /// `models/{model}`, as each request names it.
    resource: String,
    /// The key as a header value, marked sensitive so it never shows in debug output.
    key: HeaderValue,
    common: Common,
}

impl GeminiEmbedder {
    /// # Errors
    /// The HTTP client cannot be built (no TLS provider installed), or the key cannot travel
    /// in a header.
    pub fn new(config: GeminiEmbedConfig) -> Result<Self, LlmError> {
        let client = http::client(&config.http)?;
        let mut key = HeaderValue::from_str(config.api_key.expose_secret())
            .map_err(|_| LlmError::Auth("the Gemini API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        let model = config
            .model
            .strip_prefix("models/")
            .unwrap_or(&config.model)
            .to_owned();
        let url = format!(
            "{}/v1beta/models/{model}:batchEmbedContents",
            config.base_url.trim_end_matches('/')
        );
        let resource = format!("models/{model}");
        let common = Common::new(config.limits, MAX_INPUTS, config.dimensions);
        Ok(Self {
            config,
            client,
            url,
            model,
            resource,
            key,
            common,
        })
    }

    fn body(&self, inputs: &[String]) -> Value {
        let requests: Vec<Value> = inputs
            .iter()
            .map(|text| {
                let mut request = json!({
                    "model": self.resource,
                    "content": {"parts": [{"text": text}]},
                });
                if let Some(task) = &self.config.task_type {
                    request["taskType"] = json!(task);
                }
                if let Some(dimensions) = self.config.dimensions {
                    request["outputDimensionality"] = json!(dimensions);
                }
                request
            })
            .collect();
        json!({ "requests": requests })
    }

    /// One request, for at most a batch of inputs.
    async fn request(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        let request = self
            .client
            .post(&self.url)
            .header("x-goog-api-key", self.key.clone())
            .json(&self.body(inputs));
        let answer: Answer = http::send_json(
            request,
            &self.config.http,
            self.common.limits.max_response_bytes,
            None,
        )
        .await?;
        let vectors: Vec<Vec<f32>> = answer.embeddings.into_iter().map(|e| e.values).collect();
        self.common.check(&vectors, inputs.len())?;
        Ok(Embeddings {
            vectors,
            model: self.model.clone(),
            usage: Usage::default(),
        })
    }
}

#[derive(Deserialize)]
struct Answer {
    /// Missing is taken as empty, which then fails the count check.
    #[serde(default)]
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

#[async_trait]
impl Embedder for GeminiEmbedder {
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
