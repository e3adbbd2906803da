//! Access tokens: minting, the files of generated tokens, and the table
//! the network edge checks handshakes against (hashes only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polis_net::{Grant, TokenDirectory};
use polis_protocol::Access;
use sha2::{Digest, Sha256};

use crate::config::{Config, TokenEntry};

/// Random bytes in a minted token (192 bits, written as 48 hex digits).
const TOKEN_BYTES: usize = 24;

/// Roles that get a generated token when `polis.toml` configures none.
const GENERATED_ROLES: [Access; 3] = [Access::Gateway, Access::Operator, Access::Public];

/// A new random token: 24 bytes from the OS-seeded generator, as hex.
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; TOKEN_BYTES]>())
}

/// Hex SHA-256 of a token, as stored in `polis.toml`.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token table the server checks handshakes against; holds hashes only.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Grant)>,
}

impl TokenTable {
    /// Builds the table from configured entries (already checked).
    pub fn from_entries(entries: &[TokenEntry]) -> Self {
        let entries = entries
            .iter()
            .filter_map(|entry| {
                let hash = match (&entry.token, &entry.sha256) {
                    (Some(token), _) => Sha256::digest(token.as_bytes()).into(),
                    (None, Some(hash)) => {
                        let bytes = hex::decode(hash).ok()?;
                        <[u8; 32]>::try_from(bytes.as_slice()).ok()?
                    }
                    (None, None) => return None,
                };
                let scope = (entry.role == Access::Gateway && !entry.scope_prefixes.is_empty())
                    .then(|| Arc::from(entry.scope_prefixes.clone().into_boxed_slice()));
                let name = entry.name.clone().unwrap_or_else(|| {
                    format!("{}-{}", entry.role.as_str(), &hex::encode(hash)[..8])
                });
                Some((
                    hash,
                    Grant {
                        access: entry.role,
                        name,
                        scope,
                        own_sensors: if entry.role == Access::Resident {
                            Arc::from(entry.sensors.clone())
                        } else {
                            Arc::from(Vec::<String>::new())
                        },
                    },
                ))
            })
            .collect();
        Self { entries }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TokenDirectory for TokenTable {
    fn grant(&self, token: &str) -> Option<Grant> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare every entry in full so timing does not reveal near misses.
        let mut found = None;
        for (hash, grant) in &self.entries {
            let difference = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(grant.clone());
            }
        }
        found
    }
}

/// Reads the generated token for `role` from the data directory, creating it
/// on first use. Used when `polis.toml` configures no tokens.
pub fn generated_token(data_dir: &Path, role: Access) -> std::io::Result<(String, PathBuf)> {
    let path = data_dir.join(format!("{}.token", role.as_str()));
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_owned();
        if token.len() >= 16 {
            return Ok((token, path));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let token = new_token();
    write_private(&path, format!("{token}\n").as_bytes())?;
    Ok((token, path))
}

/// A 32-byte secret kept in `path` (hex), created with fresh random bytes on
/// first use; a file that is not 64 hex digits is an error, never replaced
/// (replacing it would change every noise already released).
pub(crate) fn secret_key(path: &Path) -> std::io::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not 64 hex digits")
            }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            write_private(path, format!("{}\n", hex::encode(key)).as_bytes())?;
            Ok(key)
        }
        Err(err) => Err(err),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// The tokens a server accepts, as a [`TokenTable`], and the files of those
/// it generated.
#[derive(Debug)]
pub struct ServerTokens {
    /// What the network edge checks handshakes against.
    pub table: TokenTable,
    /// Tokens generated in the data directory (when none are configured).
    pub generated: Vec<(Access, PathBuf)>,
}

/// The configured tokens; when there are none, a generated token per role
/// (gateway, operator, public) read from, or first written to, the data
/// directory; and the runtime tokens (e.g. `serve --demo`'s gateway).
pub fn server_tokens(config: &Config) -> anyhow::Result<ServerTokens> {
    use anyhow::Context as _;
    let mut generated = Vec::new();
    let mut entries = config.tokens.clone();
    if config.tokens.is_empty() {
        for role in GENERATED_ROLES {
            let (token, path) = generated_token(&config.data_dir, role)
                .with_context(|| format!("cannot write the {} token", role.as_str()))?;
            let name = format!("generated-{}", role.as_str());
            entries.push(TokenEntry::with_secret(role, Some(&name), token));
            generated.push((role, path));
        }
    }
    entries.extend(config.runtime_tokens.iter().cloned());
    Ok(ServerTokens {
        table: TokenTable::from_entries(&entries),
        generated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noise_key_is_made_once_kept_and_never_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dp.key");
        let key = secret_key(&path).expect("created");
        assert_eq!(secret_key(&path).expect("read back"), key, "kept");
        let other = tempfile::tempdir().expect("temp dir");
        assert_ne!(
            secret_key(&other.path().join("dp.key")).expect("created"),
            key,
            "random per deployment"
        );
        std::fs::write(&path, "not a key\n").expect("written");
        let err = secret_key(&path).expect_err("a broken key is an error");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            std::fs::read_to_string(&path).expect("still there"),
            "not a key\n",
            "never replaced"
        );
    }

    #[test]
    fn tokens_match_by_hash_and_role() {
        let text = format!(
            "[[token]]\nrole = \"gateway\"\ntoken = \"gateway-secret-123456\"\n\n[[token]]\nrole = \"viewer\"\nsha256 = \"{}\"\n",
            token_sha256("viewer-secret-123456")
        );
        let config = Config::from_toml_str(&text, Path::new("polis.toml")).expect("valid");
        let table = TokenTable::from_entries(&config.tokens);
        let access = |t: &str| table.grant(t).map(|g| g.access);
        assert_eq!(access("gateway-secret-123456"), Some(Access::Gateway));
        assert_eq!(
            access("viewer-secret-123456"),
            Some(Access::Public),
            "viewer means public"
        );
        assert_eq!(access("viewer-secret-12345"), None);
        let short = "[[token]]\nrole = \"viewer\"\ntoken = \"short\"\n";
        assert!(Config::from_toml_str(short, Path::new("p.toml")).is_err());
    }

    #[test]
    fn minted_tokens_are_long_hex_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn generated_tokens_are_written_once_and_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        let first = server_tokens(&config)?;
        let roles: Vec<Access> = first.generated.iter().map(|(role, _)| *role).collect();
        assert_eq!(roles, GENERATED_ROLES);
        let (gateway, path) = generated_token(dir.path(), Access::Gateway)?;
        assert_eq!(path, first.generated[0].1);
        assert_eq!(
            first.table.grant(&gateway).map(|g| g.access),
            Some(Access::Gateway)
        );
        // A second start reads the same token back rather than minting anew.
        let again = server_tokens(&config)?;
        assert_eq!(
            again.table.grant(&gateway).map(|g| g.access),
            Some(Access::Gateway)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
        }
        Ok(())
    }
}
