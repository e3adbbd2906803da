//! Content negotiation (GS CIM 009 clause 6.3.4) and the @context `Link`
//! header (clauses 6.3.5, 6.3.6).

use crate::entity::CORE_CONTEXT;
use crate::error::{ErrorKind, NgsiError};

/// The link relation of a JSON-LD @context.
pub const CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// A representation an answer may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `application/json`: the @context in a `Link` header.
    Json,
    /// `application/ld+json`: the @context in the body.
    JsonLd,
    /// `application/geo+json`: entities as GeoJSON features.
    GeoJson,
}

impl MediaType {
    /// The media type's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLd => "application/ld+json",
            Self::GeoJson => "application/geo+json",
        }
    }
}

/// The representation to answer with for an `Accept` header (absent: JSON).
/// Among the acceptable ones the highest `q` wins, and on a tie the first
/// of JSON, JSON-LD, GeoJSON (clause 6.3.4); GeoJSON only where `geo` (entity
/// retrieval and queries). Nothing acceptable: the error for a 406 answer.
pub fn negotiate(accept: Option<&str>, geo: bool) -> Result<MediaType, NgsiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(MediaType::Json);
    };
    let mut offered = vec![MediaType::Json, MediaType::JsonLd];
    if geo {
        offered.push(MediaType::GeoJson);
    }
    let mut best: Option<(f32, usize)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for parameter in parts {
            if let Some((key, value)) = parameter.split_once('=')
                && key.trim().eq_ignore_ascii_case("q")
            {
                q = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|q: &f32| q.is_finite())
                    .unwrap_or(0.0);
            }
        }
        if q <= 0.0 {
            continue;
        }
        for (index, media) in offered.iter().enumerate() {
            let fits = match name.as_str() {
                "*/*" | "application/*" => true,
                exact => exact == media.as_str(),
            };
            let better = best.is_none_or(|(best_q, best_index)| {
                q > best_q || (q == best_q && index < best_index)
            });
            if fits && better {
                best = Some((q, index));
            }
        }
    }
    match best.and_then(|(_, index)| offered.get(index).copied()) {
        Some(media) => Ok(media),
        None => Err(NgsiError::new(
            ErrorKind::NotAcceptable,
            format!(
                "not acceptable: `{accept}`; available: {}",
                offered
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The `Link` header naming the core @context.
pub fn context_link() -> String {
    format!("<{CORE_CONTEXT}>; rel=\"{CONTEXT_REL}\"; type=\"application/ld+json\"")
}

/// Checks the @context a request names in its `Link` headers: none, or
/// the core context, which this server knows; any other would have to be
/// fetched, which it does not do (`LdContextNotAvailable`). A malformed
/// context link is `BadRequestData`.
pub fn check_context_links<'a>(links: impl IntoIterator<Item = &'a str>) -> Result<(), NgsiError> {
    for header in links {
        for link in header.split(',') {
            let link = link.trim();
            if link.is_empty() {
                continue;
            }
            let Some((target, params)) =
                link.strip_prefix('<').and_then(|rest| rest.split_once('>'))
            else {
                return Err(NgsiError::bad_data(format!(
                    "malformed Link header `{link}`"
                )));
            };
            let is_context = params.split(';').any(|p| {
                p.split_once('=').is_some_and(|(key, value)| {
                    key.trim() == "rel" && value.trim().trim_matches('"') == CONTEXT_REL
                })
            });
            if !is_context {
                continue;
            }
            let core = target == CORE_CONTEXT
                || (target.starts_with("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
                    && target.ends_with(".jsonld"));
            if !core {
                return Err(NgsiError::new(
                    ErrorKind::LdContextNotAvailable,
                    format!(
                        "@context <{target}> cannot be used: this server answers with the \
                         NGSI-LD core context only and fetches no other"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_preferred_unless_asked_otherwise() {
        assert_eq!(negotiate(None, true), Ok(MediaType::Json));
        assert_eq!(negotiate(Some("*/*"), true), Ok(MediaType::Json));
        assert_eq!(negotiate(Some("application/*"), false), Ok(MediaType::Json));
        assert_eq!(
            negotiate(Some("application/ld+json"), false),
            Ok(MediaType::JsonLd)
        );
        assert_eq!(
            negotiate(Some("application/json;q=0.5, application/ld+json"), false),
            Ok(MediaType::JsonLd)
        );
        assert_eq!(
            negotiate(Some("application/geo+json"), true),
            Ok(MediaType::GeoJson)
        );
        assert!(negotiate(Some("application/geo+json"), false).is_err());
        assert!(negotiate(Some("text/html"), true).is_err());
        assert!(negotiate(Some("application/json;q=0"), true).is_err());
    }

    #[test]
    fn only_the_core_context_is_taken() {
        assert_eq!(check_context_links([]), Ok(()));
        assert_eq!(check_context_links([context_link().as_str()]), Ok(()));
        assert_eq!(
            check_context_links(["<https://example.org/x>; rel=\"next\""]),
            Ok(())
        );
        let other = "<https://smartdatamodels.org/context.jsonld>; \
                     rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"";
        assert_eq!(
            check_context_links([other]).map_err(|e| e.kind),
            Err(ErrorKind::LdContextNotAvailable)
        );
        assert_eq!(
            check_context_links(["no angle brackets"]).map_err(|e| e.kind),
            Err(ErrorKind::BadRequestData)
        );
    }
}
