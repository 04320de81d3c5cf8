//! What model calls cost: a price table by model name, in US dollars per million tokens.

/// US dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Prices {
    /// The cost of a call in US dollars times 1,000,000 (dollars per million tokens is
    /// micro-dollars per token).
    #[must_use]
    pub fn cost_micros(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let micros = (input_tokens as f64 * self.input_per_mtok
            + output_tokens as f64 * self.output_per_mtok)
            .round()
            .max(0.0) as u64;
        micros
    }

    #[must_use]
    pub fn is_set(&self) -> bool {
        self.input_per_mtok > 0.0 || self.output_per_mtok > 0.0
    }
}

/// Prices by model name, with a default for models the table does not name. A model is
/// priced by its exact name, else by the longest name in the table that it starts with
/// (so `gpt-4o-mini` also prices the dated `gpt-4o-mini-2024-07-18` a provider reports),
/// else at the default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriceTable {
    default: Prices,
    /// Longest name first, so the first prefix match is the longest.
    models: Vec<(String, Prices)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("price table entry {entry:?}: {reason}")]
pub struct PriceTableError {
    pub entry: String,
    pub reason: &'static str,
}

impl PriceTable {
    #[must_use]
    pub fn new(default: Prices, models: impl IntoIterator<Item = (String, Prices)>) -> Self {
        Self::default_only(default).with(models)
    }

    #[must_use]
    pub const fn default_only(default: Prices) -> Self {
        Self {
            default,
            models: Vec::new(),
        }
    }

    /// This table with `models` added (replacing entries of the same name).
    #[must_use]
    pub fn with(&self, models: impl IntoIterator<Item = (String, Prices)>) -> Self {
        let mut table = self.clone();
        for (name, prices) in models {
            table.models.retain(|(n, _)| *n != name);
            table.models.push((name, prices));
        }
        table
            .models
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table
    }

    /// Parses `name=input,output` entries separated by `;` (US dollars per million tokens),
    /// e.g. `gpt-4o-mini=0.15,0.60; claude-3-5-haiku=0.8,4`. Empty text is an empty table.
    pub fn parse_entries(text: &str) -> Result<Vec<(String, Prices)>, PriceTableError> {
        let mut out = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let fail = |reason| PriceTableError {
                entry: entry.to_owned(),
                reason,
            };
            let (name, prices) = entry
                .rsplit_once('=')
                .ok_or_else(|| fail("expected name=input,output"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(fail("the model name is empty"));
            }
            let (input, output) = prices
                .split_once(',')
                .ok_or_else(|| fail("expected two prices: input,output"))?;
            let price = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p >= 0.0)
                    .ok_or_else(|| fail("a price is not a number of dollars >= 0"))
            };
            out.push((
                name.to_owned(),
                Prices {
                    input_per_mtok: price(input)?,
                    output_per_mtok: price(output)?,
                },
            ));
        }
        Ok(out)
    }

    /// The prices of `model` (see the type's documentation).
    #[must_use]
    pub fn for_model(&self, model: &str) -> Prices {
        self.models
            .iter()
            .find(|(name, _)| name == model)
            .or_else(|| {
                self.models
                    .iter()
                    .find(|(name, _)| model.starts_with(name.as_str()))
            })
            .map_or(self.default, |(_, p)| *p)
    }

    /// Whether any call would cost something.
    #[must_use]
    pub fn is_set(&self) -> bool {
        self.default.is_set() || self.models.iter().any(|(_, p)| p.is_set())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn p(input: f64, output: f64) -> Prices {
        Prices {
            input_per_mtok: input,
            output_per_mtok: output,
        }
    }

    #[test]
    fn exact_then_longest_prefix_then_default() {
        let entries =
            PriceTable::parse_entries("gpt-4o=2.5,10; gpt-4o-mini=0.15,0.6 ;llama3:8b=0,0;")
                .unwrap();
        let table = PriceTable::new(p(1.0, 2.0), entries);
        assert_eq!(table.for_model("gpt-4o"), p(2.5, 10.0));
        assert_eq!(table.for_model("gpt-4o-mini"), p(0.15, 0.6));
        assert_eq!(table.for_model("gpt-4o-mini-2024-07-18"), p(0.15, 0.6));
        assert_eq!(table.for_model("gpt-4o-2024-08-06"), p(2.5, 10.0));
        assert_eq!(table.for_model("llama3:8b"), p(0.0, 0.0));
        assert_eq!(table.for_model("claude-sonnet-4"), p(1.0, 2.0));
        assert!(table.is_set());
        assert!(!PriceTable::default().is_set());
        // 1,000 input and 500 output tokens of gpt-4o-mini: 150 + 300 micro-dollars.
        assert_eq!(table.for_model("gpt-4o-mini").cost_micros(1_000, 500), 450);
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let table = PriceTable::new(Prices::default(), [("m".to_owned(), p(1.0, 1.0))])
            .with([("m".to_owned(), p(3.0, 4.0))]);
        assert_eq!(table.for_model("m"), p(3.0, 4.0));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["gpt", "=1,2", "m=1", "m=a,2", "m=-1,2", "m=1,inf"] {
            let err = PriceTable::parse_entries(bad).unwrap_err();
            assert_eq!(err.entry, bad.trim(), "{bad}");
        }
        assert!(PriceTable::parse_entries("  ").unwrap().is_empty());
    }
}
