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
];

/// Strong ETags, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &sha1_smol::Sha1::from(a.body).digest().to_string()[..16]))
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
}
