//! `weights fetch` against a local HTTP server serving a fixture: verified download, cache
//! reuse, a wrong checksum discarded, a missing file and no network at all.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::fixtures;
use faceattr::preprocess::Preprocessing;
use faceattr::weights::fetch::{FetchError, fetch};
use faceattr::weights::registry::{Checksum, KnownWeights, Source};
use sha2::{Digest, Sha256};

/// Serves `body` at /weights.h5 (404 elsewhere) for up to `max` requests; counts them.
fn serve(body: Vec<u8>, max: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut s) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            if req.starts_with("GET /weights.h5 ") {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            } else {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    (format!("http://{addr}"), count)
}

fn entry(url: String, checksum: Checksum) -> KnownWeights {
    KnownWeights {
        model: "vgg16",
        source: Source::Keras,
        file_name: "tiny.h5".into(),
        url,
        checksum,
        size: None,
        preprocessing: Preprocessing::Caffe,
    }
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(fixtures().join("keras/tiny_vgg16_notop.h5")).unwrap()
}

#[test]
fn downloads_verifies_and_then_uses_the_cache() {
    let body = fixture_bytes();
    let sha: String = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (base, count) = serve(body.clone(), 4);
    let dir = tempfile::tempdir().unwrap();
    let e = entry(format!("{base}/weights.h5"), Checksum::Sha256(sha));
    let path = fetch(&e, dir.path(), None, false).expect("download");
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // The downloaded file is a loadable Keras file.
    assert!(
        faceattr::weights::load(&path)
            .unwrap()
            .contains("block5_conv3.weight")
    );
    // Second call: verified from the cache, no request.
    let again = fetch(&e, dir.path(), None, false).expect("cached");
    assert_eq!(again, path);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn wrong_checksum_is_discarded_and_leaves_nothing_behind() {
    let (base, _) = serve(fixture_bytes(), 2);
    let dir = tempfile::tempdir().unwrap();
    let e = entry(
        format!("{base}/weights.h5"),
        Checksum::Md5("00000000000000000000000000000000".into()),
    );
    let err = fetch(&e, dir.path(), None, false).expect_err("bad checksum");
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("expected md5 0000"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no partial or final file"
    );
}

#[test]
fn http_error_and_offline_are_clear() {
    let (base, _) = serve(Vec::new(), 2);
    let dir = tempfile::tempdir().unwrap();
    let e = entry(format!("{base}/missing.h5"), Checksum::Unrecorded);
    let err = fetch(&e, dir.path(), None, false).expect_err("404");
    assert!(matches!(err, FetchError::Http { status: 404, .. }), "{err}");

    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = entry(
        format!("http://127.0.0.1:{port}/weights.h5"),
        Checksum::Unrecorded,
    );
    let err = fetch(&e, dir.path(), None, false).expect_err("offline");
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert!(err.to_string().contains("offline?"), "{err}");
}
