//! Every relative link in README.md and docs/ (and packaging/README.md) resolves to a file inside the
//! repository, and no page points at files outside it (issue 20 point 5).

use seedship_e2e::testkit::workspace_root;
use std::path::{Path, PathBuf};

fn pages(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md"), root.join("packaging/README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The targets of the inline links `[text](target)` of a Markdown page.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            let target = rest[..end].split_whitespace().next().unwrap_or("").to_string();
            out.push(target);
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves_inside_the_repository() {
    let root = workspace_root().canonicalize().unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages(&root) {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            if target.is_empty()
                || target.starts_with('#')
                || target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let resolved = page.parent().unwrap().join(file);
            checked += 1;
            match resolved.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(p) => broken.push(format!(
                    "{}: {target} points outside the repository ({})",
                    page.display(),
                    p.display()
                )),
                Err(_) => broken.push(format!("{}: {target} does not exist", page.display())),
            }
        }
        for outside in ["/work/", "../shared/", "shared/docs/", "DESIGN.md"] {
            if text.contains(outside) {
                broken.push(format!(
                    "{}: mentions {outside}, which is not in the repository",
                    page.display()
                ));
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} links found: is the link parser right?"
    );
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_link_parser_finds_targets() {
    assert_eq!(
        links("see [a](docs/a.md#x) and [b](https://x.y) [c](../c.md \"t\")"),
        vec!["docs/a.md#x", "https://x.y", "../c.md"]
    );
}
