//! The layout rules of docs/architecture.md, kept true: no file in `src/` over 600 lines, no
//! import cycle between the crate's top-level modules (the folders and the crate-root files),
//! and a module doc (`//!`) at the top of every folder's `mod.rs`.
//!
//! A module's dependencies are the `crate::NAME` paths in its code (comments and its
//! `#[cfg(test)] mod tests` left out), so a doc link does not count as a dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("src/ is readable").map(|e| e.expect("a directory entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file of `src/` belongs to (`gateway/pay.rs` → `gateway`), or `None`
/// for the crate root and the binaries.
fn top_level(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main" && name != "bin").then_some(name)
}

/// The `crate::NAME` paths in a file's code: comment lines and the unit-test module removed.
fn dependencies(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut deps = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                deps.insert(name);
            }
        }
    }
    deps
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src()).expect("under src/").to_path_buf();
        let Some(module) = top_level(&relative) else { continue };
        let text = fs::read_to_string(&file).expect("a readable source file");
        let deps = dependencies(&text);
        graph.entry(module.clone()).or_default().extend(deps.into_iter().filter(|d| *d != module));
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| known.contains(d));
    }
    graph
}

/// A cycle through `start`, if one exists (depth-first search over the module graph).
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(graph: &BTreeMap<String, BTreeSet<String>>, start: &str, at: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in &graph[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 20, "the walk found the sources");
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(f).expect("readable").lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph();
    for module in ["gateway", "config", "facilitator", "ledger", "x402", "edge"] {
        assert!(graph.contains_key(module), "the graph has `{module}`");
    }
    assert!(graph["gateway"].contains("ledger"), "the gateway's use of the ledger is seen");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_through(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle_through(&graph, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(cycle_through(&graph, "d"), None);
    assert_eq!(dependencies("use crate::x::Y;\n// crate::z\n#[cfg(test)]\nmod tests { use crate::w; }"), BTreeSet::from(["x".to_string()]));
}

#[test]
fn every_folder_says_what_it_owns() {
    for entry in fs::read_dir(src()).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if !path.is_dir() || path.ends_with("bin") {
            continue;
        }
        let text = fs::read_to_string(path.join("mod.rs")).unwrap_or_default();
        assert!(text.starts_with("//!"), "{}/mod.rs starts with a module doc", path.display());
    }
}
