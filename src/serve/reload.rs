//! Reload when the config file or a key file it names changes (SPEC §6).
//!
//! Kubernetes updates ConfigMap and Secret volumes by swapping a `..data` symlink in the
//! mounted directory; the file itself is never written, so a watch on the file alone misses
//! it. We watch the directories holding the sources, and also poll: every `POLL` the
//! sources' contents are hashed (through symlinks) and compared. The watch makes a change
//! show within ~100 ms; the poll is the fallback where inotify is unavailable or lossy.

use crate::serve::state::Guard;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

pub const POLL: Duration = Duration::from_secs(2);
/// Editors and the kubelet write in several steps: let them finish before reading.
const SETTLE: Duration = Duration::from_millis(100);

/// The contents of every source, hashed; a missing file hashes as such.
pub fn fingerprint(sources: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in sources {
        h.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update([0]),
        }
    }
    h.finalize().into()
}

fn watched_dirs(sources: &[PathBuf]) -> BTreeSet<PathBuf> {
    sources
        .iter()
        .map(|p| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        })
        .collect()
}

/// Start the watcher thread.
pub fn spawn(guard: Arc<Guard>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot watch the config directory: {e}"))?;
    std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            let mut dirs = BTreeSet::new();
            loop {
                let want = watched_dirs(&guard.registry().sources);
                if want != dirs {
                    for d in dirs.difference(&want) {
                        let _ = watcher.unwatch(d);
                    }
                    for d in want.difference(&dirs) {
                        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                            tracing::warn!(target: "ords_guard::reload", dir = %d.display(), "cannot watch ({e}); polling every {}s instead", POLL.as_secs());
                        }
                    }
                    dirs = want;
                }
                match rx.recv_timeout(POLL) {
                    Ok(()) => {
                        std::thread::sleep(SETTLE);
                        while rx.try_recv().is_ok() {}
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                // Compared with what the registry was loaded from, so a SIGHUP reload of
                // the same change is not repeated; a rejected file waits for its next change.
                if guard.sources_changed() {
                    tracing::info!(target: "ords_guard::reload", "config or key file changed: reloading");
                    let _ = guard.reload();
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_symlink_swaps() {
        let d = tempfile::tempdir().unwrap();
        let (v1, v2) = (d.path().join("..v1"), d.path().join("..v2"));
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("c.yaml"), "a").unwrap();
        std::fs::write(v2.join("c.yaml"), "b").unwrap();
        std::os::unix::fs::symlink("..v1", d.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/c.yaml", d.path().join("c.yaml")).unwrap();
        let src = vec![d.path().join("c.yaml")];
        let before = fingerprint(&src);
        assert_eq!(before, fingerprint(&src));
        std::os::unix::fs::symlink("..v2", d.path().join("..data_tmp")).unwrap();
        std::fs::rename(d.path().join("..data_tmp"), d.path().join("..data")).unwrap();
        assert_ne!(before, fingerprint(&src));
        std::fs::remove_dir_all(&v1).unwrap();
        assert_eq!(watched_dirs(&src).len(), 1);
    }
}
