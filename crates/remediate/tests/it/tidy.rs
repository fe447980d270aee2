//! Docs that stay true: every source file opens with a `//!` header saying what it holds, and
//! ARCHITECTURE.md's code map names exactly the source files that exist (a renamed, added or
//! removed module fails here until the map follows).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `dir`, as a path relative to the repository root.
fn rust_files(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root()).unwrap_or(&path);
            out.insert(relative.to_string_lossy().into_owned());
        }
    }
}

fn sources() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let crates = root().join("crates");
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        rust_files(&entry.path().join("src"), &mut files);
        rust_files(&entry.path().join("tests"), &mut files);
    }
    files
}

#[test]
fn every_source_file_has_a_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(root().join(file)).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a //! header: {missing:?}"
    );
}

#[test]
fn the_code_map_names_exactly_the_source_files() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    // Paths in backticks that end in `.rs` (the code map lists every module of every crate).
    let named: BTreeSet<String> = map
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".rs") && s.starts_with("crates/"))
        .map(str::to_owned)
        .collect();
    let missing_files: Vec<&String> = named.iter().filter(|f| !root().join(f).exists()).collect();
    assert!(
        missing_files.is_empty(),
        "ARCHITECTURE.md names files that do not exist: {missing_files:?}"
    );
    let unnamed: Vec<String> = sources()
        .into_iter()
        .filter(|f| f.contains("/src/") && !named.contains(f))
        .collect();
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md's code map does not name these source files: {unnamed:?}"
    );
}
