//! The PWA's static files, embedded from `www/` at compile time: the whitelist is this table, so
//! no request path ever reaches the filesystem.

use std::sync::LazyLock;

pub struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub body: &'static [u8],
}

pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/index.html",
        mime: "text/html; charset=utf-8",
        body: include_bytes!("../../www/index.html"),
    },
    Asset {
        path: "/access.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/access.js"),
    },
    Asset {
        path: "/device.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/device.js"),
    },
    Asset {
        path: "/rooms.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/rooms.js"),
    },
    Asset {
        path: "/models.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/models.js"),
    },
    Asset {
        path: "/pins.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/pins.js"),
    },
    Asset {
        path: "/highlight.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/highlight.js"),
    },
    Asset {
        path: "/app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../../www/app.js"),
    },
    Asset {
        path: "/style.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../../www/style.css"),
    },
    Asset { path: "/icon.svg", mime: "image/svg+xml", body: include_bytes!("../../www/icon.svg") },
    Asset { path: "/icon-192.png", mime: "image/png", body: include_bytes!("../../www/icon-192.png") },
    Asset { path: "/icon-512.png", mime: "image/png", body: include_bytes!("../../www/icon-512.png") },
    Asset {
        path: "/icon-maskable-512.png",
        mime: "image/png",
        body: include_bytes!("../../www/icon-maskable-512.png"),
    },
    Asset {
        path: "/manifest.webmanifest",
        mime: "application/manifest+json",
        body: include_bytes!("../../www/manifest.webmanifest"),
    },
    Asset { path: "/sw.js", mime: "text/javascript; charset=utf-8", body: include_bytes!("../../www/sw.js") },
];

/// The service worker with the app's version stamped in: a hash of every asset, so any change
/// to the app makes browsers install the new worker (and drop the old cache).
static SERVICE_WORKER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut h = sha1_smol::Sha1::new();
    for a in ASSETS {
        h.update(a.body);
    }
    let version = &h.digest().to_string()[..12];
    let sw = ASSETS.iter().find(|a| a.path == "/sw.js").expect("the service worker is an asset");
    String::from_utf8_lossy(sw.body).replace("__PINCER_VERSION__", version).into_bytes()
});

/// The bytes to serve for an asset.
pub fn body(asset: &Asset) -> &'static [u8] {
    if asset.path == "/sw.js" { &SERVICE_WORKER } else { asset.body }
}

/// Strong ETags, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &sha1_smol::Sha1::from(body(a)).digest().to_string()[..16]))
        .collect()
});

/// The asset for a request path (`/` is `/index.html`), with its ETag.
pub fn get(path: &str) -> Option<(&'static Asset, &'static str)> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().position(|a| a.path == path).map(|i| (&ASSETS[i], ETAGS[i].as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whitelisted_paths() {
        assert!(get("/").is_some());
        assert!(get("/app.js").is_some());
        for p in ["/../Cargo.toml", "/www/app.js", "/app.js/", "//etc/passwd", "/%2e%2e/x", "/index.html?x"] {
            assert!(get(p).is_none(), "{p}");
        }
        let (_, etag) = get("/").unwrap();
        assert!(etag.starts_with('"') && etag.len() == 18);
    }

    #[test]
    fn the_service_worker_carries_the_apps_version() {
        let (sw, _) = get("/sw.js").unwrap();
        let text = String::from_utf8(body(sw).to_vec()).unwrap();
        assert!(!text.contains("__PINCER_VERSION__"));
        assert!(text.contains("const VERSION = '"));
    }
}
