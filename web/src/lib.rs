//! Switchboard's browser side, embedded in the binary: the demo call page (`demo/`) and the
//! browser SDK (`sdk/`). The files live beside this crate, so it owns what it embeds; the
//! HTTP server serves [`ASSETS`] as they are.

/// What an asset is, for the headers it is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The demo page: served with its Content-Security-Policy and frame protection.
    Page,
    /// A script or style sheet of the demo page.
    Asset,
    /// The browser SDK: loadable from pages of any origin (`Access-Control-Allow-Origin: *`).
    Sdk,
}

/// One embedded file and the path it is served at.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The URL path, from the server's root.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// What it is.
    pub kind: Kind,
    /// Its contents.
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TS: &str = "application/typescript; charset=utf-8";

const fn asset(
    path: &'static str,
    content_type: &'static str,
    kind: Kind,
    body: &'static str,
) -> Asset {
    Asset {
        path,
        content_type,
        kind,
        body,
    }
}

/// Every embedded file.
pub const ASSETS: &[Asset] = &[
    asset("/", HTML, Kind::Page, include_str!("../demo/index.html")),
    asset("/app.js", JS, Kind::Asset, include_str!("../demo/app.js")),
    asset("/grid.js", JS, Kind::Asset, include_str!("../demo/grid.js")),
    asset(
        "/style.css",
        CSS,
        Kind::Asset,
        include_str!("../demo/style.css"),
    ),
    asset(
        "/sdk/switchboard.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/switchboard.js"),
    ),
    asset(
        "/sdk/errors.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/errors.js"),
    ),
    asset(
        "/sdk/names.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/names.js"),
    ),
    asset(
        "/sdk/files.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/files.js"),
    ),
    asset(
        "/sdk/link.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/link.js"),
    ),
    asset(
        "/sdk/stats.js",
        JS,
        Kind::Sdk,
        include_str!("../sdk/stats.js"),
    ),
    asset(
        "/sdk/switchboard.d.ts",
        TS,
        Kind::Sdk,
        include_str!("../sdk/switchboard.d.ts"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_distinct_and_the_page_loads_its_scripts_by_them() {
        let mut paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len());
        // The page and its scripts refer to each file by the path it is served at.
        let demo: String = ASSETS
            .iter()
            .filter(|a| a.kind != Kind::Sdk)
            .map(|a| a.body)
            .collect();
        for path in ["/app.js", "/grid.js", "/style.css", "/sdk/switchboard.js"] {
            assert!(demo.contains(path), "the demo never loads {path}");
        }
    }

    #[test]
    fn every_module_the_sdk_imports_is_embedded() {
        let sdk: Vec<_> = ASSETS.iter().filter(|a| a.kind == Kind::Sdk).collect();
        let mut imported = 0;
        for a in &sdk {
            for line in a.body.lines() {
                let Some(rest) = line.split(" from \"./").nth(1) else {
                    continue;
                };
                let file = rest.split('"').next().unwrap_or(rest);
                let path = format!("/sdk/{file}");
                assert!(
                    sdk.iter().any(|b| b.path == path),
                    "{} imports {path}, which is not embedded",
                    a.path
                );
                imported += 1;
            }
        }
        assert!(imported >= 4, "the SDK entry loads its modules");
    }
}
