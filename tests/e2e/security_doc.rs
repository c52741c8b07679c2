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

/// The "Roles" table of `docs/security.md` says, for every method of
/// `server/src/auth/access.rs`, exactly the roles that table gives it.
#[test]
fn the_roles_table_matches_the_access_table_of_the_code() {
    use std::collections::BTreeSet;
    use tributary_server::auth::{Role, access::METHODS};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let document =
        std::fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md");
    let section = document
        .split("\n## Roles\n")
        .nth(1)
        .expect("a Roles section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut documented: BTreeSet<(String, &str)> = BTreeSet::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let roles: Vec<&str> = Role::ALL
            .iter()
            .zip(&cells[1..])
            .filter(|(_, cell)| **cell == "yes")
            .map(|(role, _)| role.as_str())
            .collect();
        // `Service.Method`, then bare `Method`s of the same service.
        let mut service = "";
        for name in cells[0].split('`').skip(1).step_by(2) {
            let method = match name.split_once('.') {
                Some((named, method)) => {
                    service = named;
                    method
                }
                None => name,
            };
            if !service.ends_with("Service") || service.starts_with("grpc") {
                continue;
            }
            for role in &roles {
                documented.insert((format!("/tributary.v1.{service}/{method}"), role));
            }
        }
    }
    let mut coded: BTreeSet<(String, &str)> = BTreeSet::new();
    for (method, roles, _) in METHODS {
        coded.insert((method.to_string(), Role::Admin.as_str()));
        for role in *roles {
            coded.insert((method.to_string(), role.as_str()));
        }
    }
    let undocumented: Vec<_> = coded.difference(&documented).collect();
    let not_in_code: Vec<_> = documented.difference(&coded).collect();
    assert!(
        undocumented.is_empty() && not_in_code.is_empty(),
        "docs/security.md's Roles table and server/src/auth/access.rs differ: \
         allowed in the code but not documented {undocumented:?}; documented but not in the code {not_in_code:?}"
    );
}
