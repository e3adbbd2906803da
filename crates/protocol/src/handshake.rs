//! The server's side of the handshake as a pure function.

use crate::PROTOCOL_VERSION;
use crate::messages::{Hello, Rejection};
use crate::vocab::Role;

/// How the server looks up which role a token grants.
pub trait TokenLookup {
    /// The role granted by `token`, or `None` if the token is unknown.
    fn role_of(&self, token: &str) -> Option<Role>;
}

impl<F: Fn(&str) -> Option<Role>> TokenLookup for F {
    fn role_of(&self, token: &str) -> Option<Role> {
        self(token)
    }
}

/// Decides whether a [`Hello`] is accepted, returning the granted role.
///
/// Checks in order: protocol version, token, role. The version comes first so
/// that an old client learns to upgrade even with a valid token.
pub fn check_hello(hello: &Hello, tokens: &(impl TokenLookup + ?Sized)) -> Result<Role, Rejection> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Rejection::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: hello.protocol_version,
        });
    }
    let Some(granted) = tokens.role_of(&hello.token) else {
        return Err(Rejection::UnknownToken);
    };
    if granted != hello.role {
        return Err(Rejection::RoleNotAllowed {
            requested: hello.role,
        });
    }
    Ok(granted)
}
