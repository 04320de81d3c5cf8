//! Tenant value objects.

use serde::{Deserialize, Serialize};

/// A tenant's display name: 1 to 120 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantNameError {
    #[error("a tenant name cannot be empty")]
    Empty,
    #[error("a tenant name has at most 120 characters")]
    TooLong,
    #[error("a tenant name cannot contain control characters")]
    ControlCharacter,
}

impl TenantName {
    pub fn parse(input: &str) -> Result<Self, TenantNameError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(TenantNameError::Empty);
        }
        if name.chars().count() > 120 {
            return Err(TenantNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(TenantNameError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantName {
    type Error = TenantNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TenantName> for String {
    fn from(value: TenantName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            TenantName::parse("  Acme Dental ").unwrap().as_str(),
            "Acme Dental"
        );
        assert_eq!(TenantName::parse("   "), Err(TenantNameError::Empty));
        assert_eq!(
            TenantName::parse(&"x".repeat(121)),
            Err(TenantNameError::TooLong)
        );
        assert_eq!(
            TenantName::parse("a\u{0}b"),
            Err(TenantNameError::ControlCharacter)
        );
    }
}
