//! Residents' consent: what each home lets Polis derive from its sensors
//! (`<data dir>/consent.json`), and how a change reaches a running twin.
//!
//! The file is the record: a change is written (to a temporary file,
//! flushed to disk, renamed over the old one) before anyone is told it
//! took effect, so a crash loses no consent given or withdrawn. At start
//! the twin forms its groups by consent class (`polis_twin`'s privacy
//! module); while it runs, a change withdraws every aggregate the home
//! feeds, at once. Changes arrive two ways: a resident's request over the
//! protocol (`TwinLink::set`, which returns once the twin withdrew the
//! aggregates), and `polis resident consent` from another process, which
//! edits the same file; the server's consent thread notices that within a
//! second (`watch`). Writers take an exclusive lock on
//! `consent.json.lock`, so the two never lose each other's change.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use polis_protocol::Consent;
use polis_twin::{ConsentChanged, Consents, HomeInTwin, HomeRequested, TwinSystems};
use tracing::{info, warn};

/// Version of the file's format.
const FORMAT_VERSION: u32 = 1;
/// Changes waiting for the twin; a full queue makes a request wait.
const CHANGE_CAPACITY: usize = 64;
/// How long a request waits for the twin to withdraw the aggregates.
const TWIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the consent thread reads the file for changes made by other
/// processes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why consent could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The file could not be read, written or locked.
    #[error("consent file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The change is recorded, but the twin has not confirmed it in time
    /// (it is busy); it applies it as soon as it catches up.
    #[error("consent recorded; the twin applies it once it catches up")]
    NotApplied,
    /// The file is not a consent file of a known version.
    #[error("consent file {path} is not valid: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The file's contents.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentFile {
    version: u32,
    /// Consent by sensor id; sensors not listed consent to everything.
    sensors: BTreeMap<String, StoredConsent>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredConsent {
    planners: bool,
    public: bool,
    /// When it was last changed, RFC 3339.
    changed: String,
}

impl StoredConsent {
    fn consent(&self) -> Consent {
        Consent {
            planners: self.planners,
            public: self.public,
        }
    }
}

/// Every sensor's consent as recorded in `path` (missing file: everyone
/// consents to everything).
pub fn load(path: &Path) -> Result<BTreeMap<String, Consent>, ConsentError> {
    Ok(read_file(path)?
        .sensors
        .into_iter()
        .map(|(id, stored)| (id, stored.consent()))
        .collect())
}

/// The consent of each of `sensors` recorded in `path`.
pub fn of(path: &Path, sensors: &[String]) -> Result<Vec<(String, Consent)>, ConsentError> {
    let all = load(path)?;
    Ok(sensors
        .iter()
        .map(|id| (id.clone(), all.get(id).copied().unwrap_or_default()))
        .collect())
}

/// Records `consent` for every one of `sensors` in `path`, durably; returns
/// the sensors whose consent it changed.
pub fn set(path: &Path, sensors: &[String], consent: Consent) -> Result<Vec<String>, ConsentError> {
    let io = |source| ConsentError::Io {
        path: path.to_owned(),
        source,
    };
    let lock_path = path.with_extension("json.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let mut file = read_file(path)?;
    let changed_at = crate::cli::format_time_ms(crate::startup::unix_now_ms());
    let mut changed = Vec::new();
    for id in sensors {
        let before = file
            .sensors
            .get(id)
            .map(StoredConsent::consent)
            .unwrap_or_default();
        if before == consent {
            continue;
        }
        changed.push(id.clone());
        if consent == Consent::default() {
            file.sensors.remove(id);
        } else {
            file.sensors.insert(
                id.clone(),
                StoredConsent {
                    planners: consent.planners,
                    public: consent.public,
                    changed: changed_at.clone(),
                },
            );
        }
    }
    if !changed.is_empty() {
        file.version = FORMAT_VERSION;
        write_file(path, &file).map_err(io)?;
    }
    // The lock goes with the file handle.
    drop(lock);
    Ok(changed)
}

fn read_file(path: &Path) -> Result<ConsentFile, ConsentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConsentFile {
                version: FORMAT_VERSION,
                sensors: BTreeMap::new(),
            });
        }
        Err(source) => {
            return Err(ConsentError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let invalid = |detail: String| ConsentError::Invalid {
        path: path.to_owned(),
        detail,
    };
    let file: ConsentFile = serde_json::from_str(&text).map_err(|err| invalid(err.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(invalid(format!(
            "version {} (this Polis reads version {FORMAT_VERSION})",
            file.version
        )));
    }
    Ok(file)
}

/// Replaces `path` with `file`.
fn write_file(path: &Path, file: &ConsentFile) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// Replaces `path` with `bytes`: a temporary file beside it (owner-only),
/// flushed to disk, renamed over it, and the directory flushed.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("new");
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options.open(&temporary)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The twin's groups for the consent recorded in `path`.
pub fn consents(path: &Path) -> Result<Consents, ConsentError> {
    Ok(Consents::new(load(path)?))
}

/// What residents' requests ask of the running twin.
pub(crate) enum TwinRequest {
    /// Withdraw the aggregates of households whose consent changed.
    Consent(ConsentChanged),
    /// What the twin holds about a home (for an export).
    Home(HomeRequested),
}

/// Carries consent changes and residents' questions into the running twin.
#[derive(Clone)]
pub(crate) struct TwinLink {
    path: PathBuf,
    changes: SyncSender<TwinRequest>,
    /// What the twin was last told, to tell it only what another process
    /// changed since.
    known: Arc<Mutex<BTreeMap<String, Consent>>>,
}

/// The twin's end of the link.
#[derive(Resource)]
pub(crate) struct TwinInbox(Mutex<Receiver<TwinRequest>>);

impl TwinLink {
    /// A link for the consent file `path`, whose contents the twin was
    /// started with (`known`), and the inbox the twin drains.
    pub(crate) fn new(path: PathBuf, known: BTreeMap<String, Consent>) -> (Self, TwinInbox) {
        let (changes, inbox) = sync_channel(CHANGE_CAPACITY);
        (
            Self {
                path,
                changes,
                known: Arc::new(Mutex::new(known)),
            },
            TwinInbox(Mutex::new(inbox)),
        )
    }

    /// Records `consent` for `sensors` and, once it is on disk, withdraws in
    /// the twin every aggregate they feed; returns once the twin did (or
    /// the wait timed out: [`ConsentError::NotApplied`], the change is
    /// recorded and the twin applies it once it catches up). Blocking: call
    /// off the async runtime.
    pub(crate) fn set(&self, sensors: &[String], consent: Consent) -> Result<(), ConsentError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = set(&self.path, sensors, consent)?;
        if changed.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + TWIN_ANSWER_TIMEOUT;
        let (done, withdrawn) = std::sync::mpsc::channel();
        let change = ConsentChanged {
            sensors: changed.clone(),
            done: Some(done),
        };
        match self.send(TwinRequest::Consent(change), deadline) {
            Sent::Yes => {}
            // The twin has stopped; the next start forms its groups by the
            // recorded consent.
            Sent::Stopped => return Ok(()),
            // Not told: the watcher tells the twin at its next look, since
            // `known` still holds what the twin was told before.
            Sent::Full => return Err(ConsentError::NotApplied),
        }
        for id in &changed {
            if consent == Consent::default() {
                known.remove(id);
            } else {
                known.insert(id.clone(), consent);
            }
        }
        drop(known);
        let left = deadline.saturating_duration_since(Instant::now());
        withdrawn
            .recv_timeout(left)
            .map(|_| ())
            .map_err(|_| ConsentError::NotApplied)
    }

    /// Queues `request` for the twin, waiting for room until `deadline`.
    fn send(&self, mut request: TwinRequest, deadline: Instant) -> Sent {
        loop {
            match self.changes.try_send(request) {
                Ok(()) => return Sent::Yes,
                Err(TrySendError::Disconnected(_)) => return Sent::Stopped,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    request = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => return Sent::Full,
            }
        }
    }

    /// What the running twin holds about `sensors` (a home), or `None` if
    /// it does not answer in time. Blocking: call off the async runtime.
    pub(crate) fn home(&self, sensors: &[String]) -> Option<HomeInTwin> {
        let (reply, answer) = std::sync::mpsc::channel();
        let request = HomeRequested {
            sensors: sensors.to_vec(),
            reply,
        };
        let deadline = Instant::now() + TWIN_ANSWER_TIMEOUT;
        if self.send(TwinRequest::Home(request), deadline) != Sent::Yes {
            return None;
        }
        answer
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }

    /// Looks at the file once: tells the twin about every sensor whose
    /// consent another process changed since it was last told. A broken
    /// file is reported once (`reported` holds what was last reported).
    fn check(&self, reported: &mut Option<String>) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match load(&self.path) {
            Ok(now) => {
                *reported = None;
                now
            }
            Err(err) => {
                let text = err.to_string();
                if reported.as_ref() != Some(&text) {
                    warn!("{text}; consent changes made outside the server wait until it is fixed");
                    *reported = Some(text);
                }
                return;
            }
        };
        let mut changed: Vec<String> = now
            .iter()
            .filter(|(id, consent)| known.get(*id) != Some(consent))
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(known.keys().filter(|id| !now.contains_key(*id)).cloned());
        if changed.is_empty() {
            return;
        }
        let change = ConsentChanged {
            sensors: changed,
            done: None,
        };
        match self.changes.try_send(TwinRequest::Consent(change)) {
            Ok(()) => {
                info!("consent changed outside the server; the twin applies it");
                *known = now;
            }
            // Told at the next look.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts the thread that reads the consent file every second (it is
/// small) for changes made by other processes (`polis resident consent`),
/// from the moment it starts until `stop`.
pub(crate) fn watch(
    link: TwinLink,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("polis-consent".into())
        .spawn(move || {
            let mut reported = None;
            while !stop.load(Ordering::SeqCst) {
                link.check(&mut reported);
                std::thread::sleep(WATCH_EVERY);
            }
        })
}

/// Whether a request reached the twin's queue.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    Full,
    Stopped,
}

/// Hands consent changes and residents' questions to the twin before each
/// tick's readings.
pub(crate) struct ConsentPlugin;

impl Plugin for ConsentPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Update, forward_changes.before(TwinSystems::Apply));
    }
}

fn forward_changes(
    inbox: Option<Res<TwinInbox>>,
    mut changes: MessageWriter<ConsentChanged>,
    mut homes: MessageWriter<HomeRequested>,
) {
    let Some(inbox) = inbox else {
        return;
    };
    let inbox = inbox.0.lock().unwrap_or_else(PoisonError::into_inner);
    while let Ok(request) = inbox.try_recv() {
        match request {
            TwinRequest::Consent(change) => {
                changes.write(change);
            }
            TwinRequest::Home(request) => {
                homes.write(request);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn consent_is_recorded_and_read_back_and_the_default_is_not_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("consent.json");
        assert!(load(&path).expect("missing file reads").is_empty());
        let refuse_public = Consent {
            planners: true,
            public: false,
        };
        let changed = set(&path, &ids(&["m1", "m2"]), refuse_public).expect("written");
        assert_eq!(changed, ids(&["m1", "m2"]));
        // Setting the same again changes nothing.
        assert!(
            set(&path, &ids(&["m1"]), refuse_public)
                .expect("written")
                .is_empty()
        );
        let read = of(&path, &ids(&["m1", "m3"])).expect("reads");
        assert_eq!(read[0], ("m1".to_owned(), refuse_public));
        assert_eq!(read[1], ("m3".to_owned(), Consent::default()));
        // Back to the default: no longer listed.
        set(&path, &ids(&["m1"]), Consent::default()).expect("written");
        let all = load(&path).expect("reads");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["m2"]);
    }

    #[test]
    fn a_broken_or_newer_file_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("consent.json");
        std::fs::write(&path, "{ not json").expect("write");
        let err = load(&path).expect_err("broken file refused");
        assert!(matches!(err, ConsentError::Invalid { .. }), "{err}");
        std::fs::write(&path, r#"{"version": 9, "sensors": {}}"#).expect("write");
        let err = load(&path).expect_err("newer file refused");
        assert!(err.to_string().contains("version 9"), "{err}");
        // A write does not replace a file it cannot read.
        let err = set(&path, &ids(&["m1"]), Consent::default()).expect_err("refused");
        assert!(matches!(err, ConsentError::Invalid { .. }));
    }

    #[test]
    fn changes_made_by_another_process_reach_the_twin_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("consent.json");
        let (link, inbox) = TwinLink::new(path.clone(), BTreeMap::new());
        let no_public = Consent {
            planners: true,
            public: false,
        };
        set(&path, &ids(&["m1"]), no_public).expect("written");
        link.check(&mut None);
        let inbox = inbox.0.lock().expect("inbox");
        let told = |request: TwinRequest| match request {
            TwinRequest::Consent(change) => change.sensors,
            TwinRequest::Home(_) => panic!("not a consent change"),
        };
        assert_eq!(told(inbox.try_recv().expect("told")), ids(&["m1"]));
        link.check(&mut None);
        assert!(inbox.try_recv().is_err(), "told only once");
        // Going back to the default is a change too.
        set(&path, &ids(&["m1"]), Consent::default()).expect("written");
        link.check(&mut None);
        assert_eq!(told(inbox.try_recv().expect("told")), ids(&["m1"]));
    }
}
