//! The server's side of the handshake as a pure function.

use crate::PROTOCOL_VERSION;
use crate::messages::{Hello, Rejection};
use crate::vocab::Access;

/// How the server looks up what a token grants.
pub trait TokenLookup {
    /// The access granted by `token`, or `None` if the token is unknown.
    fn access_of(&self, token: &str) -> Option<Access>;
}

impl<F: Fn(&str) -> Option<Access>> TokenLookup for F {
    fn access_of(&self, token: &str) -> Option<Access> {
        self(token)
    }
}

/// Decides whether a [`Hello`] is accepted, returning the granted access.
///
/// Checks in order: protocol version, token, role. The version comes first so
/// that an old client learns to upgrade even with a valid token.
pub fn check_hello(
    hello: &Hello,
    tokens: &(impl TokenLookup + ?Sized),
) -> Result<Access, Rejection> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Rejection::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: hello.protocol_version,
        });
    }
    let Some(granted) = tokens.access_of(&hello.token) else {
        return Err(Rejection::UnknownToken);
    };
    if granted.role() != hello.role {
        return Err(Rejection::RoleNotAllowed {
            requested: hello.role,
        });
    }
    Ok(granted)
}
