//! The dashboard's files, built by `dashboard/build.mjs` into `assets/` and
//! committed, so that building the server needs no Node (`dashboard/ci.sh`
//! fails when they differ from what the sources build).

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The file's content.
    pub bytes: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// A strong `ETag`: a hash of the content, quoted.
    pub etag: String,
}

/// (URL path, file content, content type); `/` is the index.
const FILES: [(&str, &[u8], &str); 4] = [
    (
        "/",
        include_bytes!("assets/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/app.js",
        include_bytes!("assets/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/app.css",
        include_bytes!("assets/app.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/favicon.svg",
        include_bytes!("assets/favicon.svg"),
        "image/svg+xml",
    ),
];

/// The file served at a URL path (`/index.html` is `/` too).
pub fn find_asset(path: &str) -> Option<&'static Asset> {
    static ASSETS: OnceLock<Vec<(&'static str, Asset)>> = OnceLock::new();
    let assets = ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|&(path, bytes, content_type)| {
                let digest = Sha256::digest(bytes);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                (
                    path,
                    Asset {
                        bytes,
                        content_type,
                        etag: format!("\"{hex}\""),
                    },
                )
            })
            .collect()
    });
    let path = if path == "/index.html" { "/" } else { path };
    assets
        .iter()
        .find(|(served_at, _)| *served_at == path)
        .map(|(_, asset)| asset)
}
