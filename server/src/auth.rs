//! Authentication and authorization (JWT bearer tokens). STUB: every request
//! is an operator that sees all sources until verification lands.

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::AppError;
use crate::state::AppState;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Live figures, lists, trends, error log.
    Viewer,
    /// Also raw JSON payloads and exports.
    Operator,
}

/// The verified caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Principal {
    /// `sub` claim.
    pub subject: String,
    /// Role.
    pub role: Role,
    /// Source names the token is limited to; `None` = all sources.
    pub sources: Option<BTreeSet<String>>,
    /// `exp` claim (epoch seconds), if any.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// A principal that may do everything (auth disabled).
    pub fn unrestricted() -> Self {
        Principal {
            subject: "anonymous".into(),
            role: Role::Operator,
            sources: None,
            expires_at: None,
        }
    }

    /// May this principal see `source`?
    pub fn can_see(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|s| s.contains(source))
    }

    /// 403 unless operator.
    pub fn require_operator(&self) -> Result<(), AppError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(AppError::Forbidden("this needs the operator role".into()))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = AppError;

    async fn from_request_parts(
        _parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Principal::unrestricted())
    }
}
