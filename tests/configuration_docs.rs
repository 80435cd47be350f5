//! The documentation lists every variable of the one table (`config::TABLE`): each name appears
//! as `` `NAME` `` in docs/configuration.md (README.md while that page does not exist).

use std::path::PathBuf;

use x402_edge_paywall::config::TABLE;

#[test]
fn every_variable_of_the_table_is_documented() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let page = [root.join("docs/configuration.md"), root.join("README.md")].into_iter().find(|p| p.is_file()).expect("docs/configuration.md or README.md");
    let text = std::fs::read_to_string(&page).unwrap();
    let missing: Vec<&str> = TABLE.iter().map(|v| v.name).filter(|n| !text.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "{} does not document {missing:?}", page.display());
}
