//! The reference docs are generated from the settings and signal tables;
//! this test fails when they drift. Regenerate with
//! `FERRICORN_BLESS=1 cargo test --test docs`.

fn check(path: &str, want: String) {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("FERRICORN_BLESS").is_some() {
        std::fs::write(&full, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&full).unwrap_or_default();
    assert!(
        have == want,
        "{path} is out of date with the code; run FERRICORN_BLESS=1 cargo test --test docs"
    );
}

#[test]
fn settings_reference_matches_the_settings_table() {
    let mut md = String::from("# ferricorn settings reference\n\n");
    md.push_str("Generated from the settings table in `src/config.rs` (`FERRICORN_BLESS=1 cargo test --test docs`).\n\n");
    md.push_str(&ferricorn::config::reference_markdown());
    check("docs/settings.md", md);
}

#[test]
fn readme_mentions_every_flag() {
    let readme =
        std::fs::read_to_string(format!("{}/README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for s in ferricorn::config::SETTINGS {
        assert!(
            readme.contains(s.flag()),
            "README.md does not mention {}",
            s.flag()
        );
    }
}
