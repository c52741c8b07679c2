//! Keeps the "Hostile inputs" and "Bounded resources" tables of
//! `docs/security.md` honest: every row
//! names at least one test as `path::test`, and every test named exists.

use std::path::Path;

#[test]
fn every_hostile_input_row_names_a_test_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let document =
        std::fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md");
    for (title, at_least) in [("Hostile inputs", 10), ("Bounded resources", 8)] {
        check_rows(&root, &document, title, at_least);
    }
}

fn check_rows(root: &Path, document: &str, title: &str, at_least: usize) {
    let section = document
        .split(&format!("\n## {title}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("a {title} section"));
    let section = section.split("\n## ").next().unwrap_or(section);
    let rows: Vec<&str> = section
        .lines()
        .filter(|line| {
            line.starts_with("| ") && !line.starts_with("| input") && !line.starts_with("| ---")
        })
        .collect();
    assert!(
        rows.len() >= at_least,
        "the {title} table has {} rows",
        rows.len()
    );
    for row in rows {
        let tests: Vec<&str> = row
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|code| code.contains(".rs::"))
            .collect();
        assert!(!tests.is_empty(), "a row without a test: {row}");
        for test in tests {
            let (path, name) = test.split_once("::").expect("path::test");
            let source = std::fs::read_to_string(root.join(path))
                .unwrap_or_else(|error| panic!("{path} named in docs/security.md: {error}"));
            assert!(
                source.contains(&format!("fn {name}(")),
                "docs/security.md names {test}, which does not exist"
            );
        }
    }
}
