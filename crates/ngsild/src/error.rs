//! NGSI-LD errors as ProblemDetails (RFC 7807) bodies with the error types
//! of ETSI GS CIM 009 (clause 5.5.2, HTTP status per table 6.3.2-1).

use serde_json::{Value, json};

/// Prefix of every NGSI-LD error type URI.
pub const ERROR_TYPE_PREFIX: &str = "https://uri.etsi.org/ngsi-ld/errors/";

/// The NGSI-LD error types this API answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is syntactically wrong: unknown or incompatible
    /// parameters, unsupported `options` (400).
    InvalidRequest,
    /// The request's data does not meet the operation's requirements: a bad
    /// `q`, geo-query or URI, a query that selects nothing (too wide) (400).
    BadRequestData,
    /// No such entity, type or attribute (404).
    ResourceNotFound,
    /// More results asked for than a page may hold (403).
    TooManyResults,
    /// A `@context` given by the client cannot be used (503).
    LdContextNotAvailable,
    /// The operation exists in NGSI-LD but not on this resource (422).
    OperationNotSupported,
    /// The server failed (500).
    InternalError,
    /// No representation the client accepts (406; the spec asks for a 406
    /// listing the available representations and names no error type,
    /// so this one is named as other brokers name it).
    NotAcceptable,
}

impl ErrorKind {
    /// The last segment of the type URI.
    pub fn name(self) -> &'static str {
        match self {
            Self::InvalidRequest => "InvalidRequest",
            Self::BadRequestData => "BadRequestData",
            Self::ResourceNotFound => "ResourceNotFound",
            Self::TooManyResults => "TooManyResults",
            Self::LdContextNotAvailable => "LdContextNotAvailable",
            Self::OperationNotSupported => "OperationNotSupported",
            Self::InternalError => "InternalError",
            Self::NotAcceptable => "NotAcceptable",
        }
    }

    /// The HTTP status code (GS CIM 009 table 6.3.2-1; `LdContextNotAvailable`
    /// as 503, which the ETSI conformance tests of the 1.8 era expect).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::BadRequestData => 400,
            Self::ResourceNotFound => 404,
            Self::TooManyResults => 403,
            Self::LdContextNotAvailable => 503,
            Self::OperationNotSupported => 422,
            Self::InternalError => 500,
            Self::NotAcceptable => 406,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "The request is not valid.",
            Self::BadRequestData => "The request data is not valid for the operation.",
            Self::ResourceNotFound => "Resource not found.",
            Self::TooManyResults => "Too many results.",
            Self::LdContextNotAvailable => "The @context is not available.",
            Self::OperationNotSupported => "Operation not supported.",
            Self::InternalError => "Internal error.",
            Self::NotAcceptable => "Not acceptable.",
        }
    }
}

/// An NGSI-LD error: its type and what exactly went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", kind.name())]
pub struct NgsiError {
    /// The error type.
    pub kind: ErrorKind,
    /// What went wrong, for the client.
    pub detail: String,
    /// The resource concerned (an entity id), if any.
    pub instance: Option<String>,
}

impl NgsiError {
    /// An error of `kind` saying `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            instance: None,
        }
    }

    /// `BadRequestData`.
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }

    /// `InvalidRequest`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }

    /// `ResourceNotFound` for `instance`.
    pub fn not_found(instance: &str, detail: impl Into<String>) -> Self {
        Self {
            instance: Some(instance.to_owned()),
            ..Self::new(ErrorKind::ResourceNotFound, detail)
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The ProblemDetails body (sent as `application/json`, GS CIM 009
    /// clause 5.5.3).
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": format!("{ERROR_TYPE_PREFIX}{}", self.kind.name()),
            "title": self.kind.title(),
            "status": self.status(),
            "detail": self.detail,
        });
        if let (Some(instance), Some(object)) = (&self.instance, body.as_object_mut()) {
            object.insert("instance".into(), Value::String(instance.clone()));
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_carry_the_spec_type_uri_status_and_detail() {
        let error = NgsiError::not_found(
            "urn:ngsi-ld:Building:b1",
            "no entity urn:ngsi-ld:Building:b1",
        );
        assert_eq!(error.status(), 404);
        assert_eq!(
            error.body(),
            json!({
                "type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                "title": "Resource not found.",
                "status": 404,
                "detail": "no entity urn:ngsi-ld:Building:b1",
                "instance": "urn:ngsi-ld:Building:b1",
            })
        );
        let error = NgsiError::bad_data("too wide");
        assert_eq!(
            error.body()["type"],
            "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
        );
        assert_eq!(error.body().get("instance"), None);
        assert_eq!(NgsiError::new(ErrorKind::TooManyResults, "x").status(), 403);
        assert_eq!(
            NgsiError::new(ErrorKind::LdContextNotAvailable, "x").status(),
            503
        );
    }
}
