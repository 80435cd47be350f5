//! Hashes the browser paywall page's inline script (`src/paywall/lean-qr.js` followed by
//! `src/paywall/page.js`) and style (`src/paywall/page.css`) for the page's
//! `Content-Security-Policy` (CSP Level 3 hash sources: `'sha256-<base64 of SHA-256 of the
//! element's text>'`), so the Worker never hashes at run time.

use std::{env, fs, path::Path};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

fn main() {
    let mut out = String::new();
    for (name, files) in [("SCRIPT_SHA256", &["src/paywall/lean-qr.js", "src/paywall/page.js"][..]), ("STYLE_SHA256", &["src/paywall/page.css"][..])] {
        let mut text = Vec::new();
        for file in files {
            println!("cargo:rerun-if-changed={file}");
            text.extend(fs::read(file).unwrap_or_else(|e| panic!("build.rs: reading {file}: {e}")));
        }
        let hash = STANDARD.encode(Sha256::digest(&text));
        out.push_str(&format!("/// `'sha256-…'` CSP source of {}.\npub const {name}: &str = \"'sha256-{hash}'\";\n", files.join(" + ")));
    }
    let dest = Path::new(&env::var("OUT_DIR").expect("OUT_DIR is set by cargo")).join("paywall_hashes.rs");
    fs::write(dest, out).expect("build.rs: writing paywall_hashes.rs");
}
