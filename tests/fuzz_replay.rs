//! The fuzz targets' checks on the stable toolchain: every file of
//! `fuzz/seeds/<target>/` and of the saved corpus `fuzz/corpus/<target>/` is
//! fed through the same function the libFuzzer target calls
//! (`fuzz/checks/mod.rs`). A regression that a fuzzer once found (or a seed
//! describes) fails here on every `cargo test`, without nightly. Growing the
//! corpus: fuzz/README.md.

#[path = "../fuzz/checks/mod.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "corpus"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    out.sort();
    out
}

fn replay(target: &str) {
    let check = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no check for {target}"))
        .1;
    let files = inputs(target);
    // The seeds alone are a handful; a missing corpus directory would make
    // this test pass on almost nothing, so insist on it.
    assert!(
        files.len() >= 100,
        "fuzz/{{seeds,corpus}}/{target}: only {} inputs; is fuzz/corpus/{target}/ missing?",
        files.len()
    );
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail the fuzz check (reproduce with the \
         fuzz target on the file, fuzz/README.md): {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn parse_head_seeds_and_corpus() {
    replay("parse_head");
}

#[test]
fn body_seeds_and_corpus() {
    replay("body");
}

#[test]
fn ws_frames_seeds_and_corpus() {
    replay("ws_frames");
}

#[test]
fn every_target_is_replayed() {
    // A new target in fuzz/Cargo.toml needs its check here too.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "ferricorn-fuzz")
        .collect();
    let mut names: Vec<&str> = checks::TARGETS.iter().map(|t| t.0).collect();
    let mut bins_sorted = bins.clone();
    names.sort_unstable();
    bins_sorted.sort_unstable();
    assert_eq!(names, bins_sorted);
}
