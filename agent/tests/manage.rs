//! End-to-end tests of the commands for the years after seeding, in staging: exclusions given at `offline
//! start` and changed with `policy set`, `policy show`, `status`, `forget` (dry run, JSON, stored rules
//! applied by `backup`), and browsing (`ls`, `find`, `diff`, `dump`, `restore --exclude`).

use std::path::Path;
use std::process::Command;

mod common;
use common::{s, text, Env};

fn write(p: &Path, body: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn exclusions_are_applied_recorded_and_changeable() {
    let e = Env::new().with_var("TZ", "CET-1CEST,M3.5.0,M10.5.0/3");
    let src = e.p("src");
    write(&src.join("keep.txt"), b"kept");
    write(&src.join("scratch.tmp"), b"left out");
    write(&src.join("Build.TMP"), b"left out, case folded");
    write(
        &src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    );
    write(&src.join("cache/blob"), b"cached");
    write(&src.join("private/.nobackup"), b"");
    write(&src.join("private/secret"), b"s");
    write(&src.join("big.bin"), &vec![7u8; 3000]);
    write(&src.join("sub/deep/a.log"), b"log");
    std::fs::write(e.p("ex.txt"), "# patterns\n\n*.log\n").unwrap();
    // a bad pattern is refused before anything is written
    let a = e.start_args(&["--exclude", "/srv/["]);
    let err = e.fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("invalid exclude pattern \"/srv/[\""), "{err}");
    assert!(!e.p("state/policy.json").exists());
    e.start(&[
        "--exclude",
        "*.tmp",
        "--iexclude",
        "build.tmp",
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "2K",
        "--exclude-file",
        s(&e.p("ex.txt")),
        "--one-file-system",
    ]);
    let status = e.ok(&["status"]);
    assert!(
        status.contains("exclusions: --exclude *.tmp --iexclude build.tmp")
            && status.contains("--exclude-caches")
            && status.contains("--exclude-larger-than 2048"),
        "{status}"
    );
    e.ok(&["backup"]);
    let ls = e.ok(&["ls", "latest"]);
    let root = s(&src).to_string();
    let listed: Vec<&str> = ls.lines().collect();
    assert_eq!(
        listed,
        [
            root.clone(),
            format!("{root}/keep.txt"),
            format!("{root}/sub"),
            format!("{root}/sub/deep"),
        ],
        "{ls}"
    );
    // the snapshot records the exclusions
    let policy: serde_json::Value = serde_json::from_str(&e.ok(&["policy", "show", "--json"])).unwrap();
    assert_eq!(policy["exclude"]["patterns"][0], "*.tmp");
    assert_eq!(policy["exclude"]["caches"], true);

    // remove some exclusions, add a source: the next backup reads the new source and the files let in
    write(&e.p("src2/new.txt"), b"new source");
    let out = e.ok(&[
        "policy",
        "set",
        "--remove-exclude",
        "*.tmp",
        "--no-exclude-caches",
        "--no-exclude-larger-than",
        "--add-source",
        s(&e.p("src2")),
    ]);
    assert!(
        out.contains("exclusion removed: *.tmp") && out.contains("source added:"),
        "{out}"
    );
    assert!(e.fails(&["policy", "set"]).contains("nothing to change"));
    assert!(e
        .fails(&["policy", "set", "--remove-exclude", "nope"])
        .contains("not an exclude pattern"));
    assert!(e
        .fails(&["policy", "set", "--add-source", s(&src.join("sub"))])
        .contains("overlaps source"));
    let status = e.ok(&["status"]);
    assert!(
        status.contains("policy changed") && status.contains("source added"),
        "{status}"
    );
    let out = e.ok(&["backup", "--another-snapshot"]);
    assert!(out.contains("snapshot"), "{out}");
    let ls = e.ok(&["ls", "latest", "--json"]);
    let paths: Vec<String> = json_lines(&ls)
        .iter()
        .map(|v| v["path"].as_str().unwrap().to_string())
        .collect();
    for want in ["scratch.tmp", "cache/blob", "big.bin", "keep.txt"] {
        assert!(
            paths.contains(&format!("{root}/{want}")),
            "{want} missing: {paths:?}"
        );
    }
    assert!(
        paths.contains(&format!("{}/new.txt", s(&e.p("src2")))),
        "{paths:?}"
    );
    for gone in ["Build.TMP", "private", "sub/deep/a.log"] {
        assert!(
            !paths.contains(&format!("{root}/{gone}")),
            "{gone} present: {paths:?}"
        );
    }
    // an unchanged file of the old source was not read again (its parent was the first snapshot)
    assert!(out.contains("(1 unchanged)"), "{out}");
}

#[test]
fn forget_browse_and_stored_retention() {
    let e = Env::new().with_var("TZ", "CET-1CEST,M3.5.0,M10.5.0/3");
    let src = e.p("src");
    write(&src.join("a.txt"), b"version one\n");
    write(&src.join("docs/b.txt"), &vec![b'b'; 10_000]);
    write(&src.join("docs/c.pdf"), &common::random(200_000, 3));
    e.start(&[]);
    assert!(e
        .fails(&["forget", "--dry-run"])
        .contains("no keep rule: give --keep-last"));
    e.ok(&["backup"]);
    std::fs::write(src.join("a.txt"), b"version two, longer\n").unwrap();
    write(&src.join("docs/new.txt"), b"added");
    std::fs::remove_file(src.join("docs/b.txt")).unwrap();
    e.ok(&["backup", "--another-snapshot"]);
    let ids = e.snapshot_ids();
    assert_eq!(ids.len(), 2);
    let root = s(&src).to_string();

    // diff, with sizes
    let d: serde_json::Value = serde_json::from_str(&e.ok(&["diff", &ids[0], &ids[1], "--json"])).unwrap();
    let changes: Vec<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("changed".into(), format!("{root}/a.txt"))),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("added".into(), format!("{root}/docs/new.txt"))),
        "{changes:?}"
    );
    assert!(
        changes.contains(&("removed".into(), format!("{root}/docs/b.txt"))),
        "{changes:?}"
    );
    assert_eq!(d["summary"]["removed_bytes"], 10_000);
    assert_eq!(d["summary"]["changed_bytes_before"], 12);
    assert_eq!(d["summary"]["changed_bytes_after"], 20);
    let txt = e.ok(&["diff", &ids[0], &ids[1]]);
    assert!(
        txt.contains(&format!("M  {root}/a.txt  (12 -> 20 bytes)")),
        "{txt}"
    );

    // find across snapshots
    let f = json_lines(&e.ok(&["find", "*.txt", "--json"]));
    let per: Vec<(String, String)> = f
        .iter()
        .map(|v| {
            (
                v["snapshot"].as_str().unwrap()[..16].to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(per.len(), 4, "{per:?}"); // a.txt and b.txt in the first, a.txt and new.txt in the second
    assert!(per.contains(&(ids[0].clone(), format!("{root}/docs/b.txt"))));
    assert!(!per.contains(&(ids[1].clone(), format!("{root}/docs/b.txt"))));

    // dump a file and a folder
    let o = e.run(&["dump", &ids[0], &format!("{root}/a.txt")]);
    assert!(o.status.success());
    assert_eq!(o.stdout, b"version one\n");
    let o = e.run(&["dump", "latest", &format!("{root}/docs")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::write(e.p("docs.tar"), &o.stdout).unwrap();
    std::fs::create_dir(e.p("untar")).unwrap();
    let t = Command::new("tar")
        .args(["-xf", s(&e.p("docs.tar")), "-C", s(&e.p("untar"))])
        .output()
        .unwrap();
    assert!(t.status.success(), "GNU tar: {}", text(&t.stderr));
    assert_eq!(
        std::fs::read(e.p("untar/c.pdf")).unwrap(),
        std::fs::read(src.join("docs/c.pdf")).unwrap()
    );
    assert_eq!(std::fs::read(e.p("untar/new.txt")).unwrap(), b"added");
    assert!(e.fails(&["dump", "latest", "/nowhere"]).contains("no such path"));

    // restore --exclude
    e.ok(&[
        "restore",
        "latest",
        "--target",
        s(&e.p("out")),
        "--exclude",
        "*.pdf",
    ]);
    let out = e.p("out").join(root.trim_start_matches('/'));
    assert!(out.join("a.txt").exists() && out.join("docs/new.txt").exists());
    assert!(!out.join("docs/c.pdf").exists());

    // forget: a dry run changes nothing and says which rule keeps what
    let plan: serde_json::Value =
        serde_json::from_str(&e.ok(&["forget", "--keep-last", "1", "--dry-run", "--json"])).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["time_zone"], "local");
    assert_eq!(plan["kept"], 1);
    assert_eq!(plan["removed"][0].as_str().unwrap()[..16], ids[0]);
    let newest = &plan["groups"][0]["snapshots"][0];
    assert_eq!(newest["reasons"][0], "last");
    assert!(
        newest["reasons"][1]
            .as_str()
            .unwrap()
            .starts_with("seeded by import job job1"),
        "{newest}"
    );
    assert_eq!(e.snapshot_ids().len(), 2);
    let txt = e.ok(&["forget", "--keep-last", "1"]);
    assert!(txt.contains("removed 1 snapshot(s), kept 1"), "{txt}");
    assert!(txt.contains(&format!("remove  {}", ids[0])), "{txt}");
    assert_eq!(e.snapshot_ids(), [ids[1].clone()]);
    let desc = std::fs::read_to_string(e.p("staging/job1/job.json")).unwrap();
    assert!(
        !desc.contains(&ids[0]),
        "the job descriptor still lists the removed snapshot"
    );
    e.ok(&["check"]);

    // stored rules: every backup applies them
    e.ok(&["policy", "set", "--keep-last", "2"]);
    let show = e.ok(&["policy", "show"]);
    assert!(show.contains("retention after each backup: last 2"), "{show}");
    for i in 0..2 {
        std::fs::write(src.join("a.txt"), format!("round {i}")).unwrap();
        let out = e.ok(&["backup", "--another-snapshot"]);
        let want = if i == 0 {
            "removed 0 snapshot(s), kept 2"
        } else {
            "removed 1 snapshot(s), kept 2"
        };
        assert!(out.contains(&format!("retention (last 2): {want}")), "{out}");
    }
    assert_eq!(e.snapshot_ids().len(), 2);
    e.ok(&["check"]);
    e.ok(&["policy", "set", "--clear-keep"]);
    assert!(e
        .ok(&["policy", "show"])
        .contains("retention after each backup: none"));
}
