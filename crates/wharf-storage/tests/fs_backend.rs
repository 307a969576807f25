//! The shared backend suite against the filesystem backend, plus the
//! filesystem-specific guarantees (start-up clean-up, layout version).

use std::sync::{Arc, Mutex};

use wharf_storage::{testsuite, Backend, FsBackend, StorageError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_backend_passes_the_shared_suite() {
    let dirs = Arc::new(Mutex::new(Vec::new()));
    let keep = dirs.clone();
    testsuite::run_all(move || {
        let dir = tempfile::tempdir().unwrap();
        let backend = FsBackend::open(dir.path()).unwrap();
        keep.lock().unwrap().push(dir);
        Arc::new(backend) as Arc<dyn Backend>
    })
    .await;
    assert!(!dirs.lock().unwrap().is_empty());
}

#[test]
fn leftovers_are_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    FsBackend::open(dir.path()).unwrap();
    let torn = dir.path().join("tmp/half-written");
    std::fs::write(&torn, b"partial").unwrap();
    FsBackend::open(dir.path()).unwrap();
    assert!(!torn.exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wharf-layout")).unwrap(),
        "1"
    );
}

#[test]
fn a_shared_open_leaves_another_process_writes_alone() {
    let dir = tempfile::tempdir().unwrap();
    FsBackend::open(dir.path()).unwrap();
    let in_flight = dir.path().join("tmp/being-written-by-the-server");
    std::fs::write(&in_flight, b"partial").unwrap();
    FsBackend::open_shared(dir.path()).unwrap();
    assert!(in_flight.exists());
}

#[test]
fn newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wharf-layout"), "99").unwrap();
    let err = FsBackend::open(dir.path()).err().expect("refused");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

#[test]
fn unwritable_root_is_a_clear_error() {
    let err = FsBackend::open("/proc/wharf-cannot-write-here")
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("/proc/wharf-cannot-write-here"),
        "{err}"
    );
}
