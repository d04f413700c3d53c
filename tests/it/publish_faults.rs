//! Publishing safety, tested on the binary: a kill or a failed file-system
//! operation at every step of the commit leaves `--out` complete (old or new)
//! and the next run cleans up and says so; porledger replaces only its own
//! output; IDs never share a file; `render` trusts nothing it reads.
//!
//! Kills and failures come from the publish module's test hook
//! `PORLEDGER_FAULT_AT` (see `src/render/publish.rs`).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type Tree = BTreeMap<String, Vec<u8>>;

/// A scratch directory holding a copy of the hard-case sample data in `in/`.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/hard-cases");
        std::fs::create_dir(dir.path().join("in")).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.path().join("in").join(e.file_name())).unwrap();
        }
        Env { dir }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `new`: the run with PDFs; otherwise the older run without.
    fn cmd(&self, out: &str, new: bool, fault: Option<&str>) -> Command {
        let mut c = crate::common::command();
        c.current_dir(self.dir.path())
            .args(["run", "--period", "2026-10"])
            .args(["--billing", "in/billing-2026-10.csv"])
            .args(["--designations", "in/designations.csv"])
            .args(["--rules", "in/rules.toml", "--fx", "in/fx.csv"])
            .args(["--out", out, "--quiet"])
            .env_remove("PORLEDGER_FAULT_AT");
        if !new {
            c.arg("--no-pdf");
        }
        if let Some(f) = fault {
            c.env("PORLEDGER_FAULT_AT", f);
        }
        c
    }

    fn run(&self, out: &str, new: bool, fault: Option<&str>) -> Output {
        self.cmd(out, new, fault).output().unwrap()
    }

    fn render(&self, out: &str) -> Output {
        crate::common::command()
            .current_dir(self.dir.path())
            .args(["render", "--out", out, "--locale", "de", "--quiet"])
            .env_remove("PORLEDGER_FAULT_AT")
            .output()
            .unwrap()
    }

    /// Every file below `rel` (following `rel` itself if it is a link), or
    /// `None` when it does not exist.
    fn tree(&self, rel: &str) -> Option<Tree> {
        fn walk(base: &Path, d: &Path, out: &mut Tree) {
            for e in std::fs::read_dir(d).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                if e.file_type().unwrap().is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, std::fs::read(&p).unwrap());
                }
            }
        }
        let root = self.p(rel);
        if !root.exists() {
            return None;
        }
        let mut t = Tree::new();
        walk(&root, &root, &mut t);
        Some(t)
    }

    /// Names of porledger's staging and old directories in the scratch dir.
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // (An output's lock file is kept by design.)
            .filter(|n| n.contains(".porledger-") && !n.ends_with(".porledger-lock"))
            .collect();
        v.sort();
        v
    }

    /// The old (no PDFs) and new (PDFs) outputs, from clean runs.
    fn references(&self) -> (Tree, Tree) {
        assert_eq!(code(&self.run("ref-old", false, None)), 0);
        assert_eq!(code(&self.run("ref-new", true, None)), 0);
        let (a, b) = (self.tree("ref-old").unwrap(), self.tree("ref-new").unwrap());
        assert_ne!(a, b);
        (a, b)
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn killed(o: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    o.status.signal().is_some()
}

/// A kill at every step of publishing, with and without the atomic exchange:
/// `--out` is the complete old or the complete new output (or, only between
/// the two renames of the fallback, missing with the old output kept aside),
/// and the next run puts things right and says what it did.
#[test]
fn a_kill_at_every_step_leaves_old_or_new_and_the_next_run_recovers() {
    let env = Env::new();
    let (old, new) = env.references();
    let cases: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "staged",
                "before-commit",
                "exchanged",
                "removing-old",
                "removed-old-files",
            ],
        ),
        (
            "no-exchange,",
            &[
                "staged",
                "before-commit",
                "moved-old",
                "renamed-new",
                "removing-old",
                "removed-old-files",
            ],
        ),
    ];
    for (mode, steps) in cases {
        for step in *steps {
            let what = format!("{mode}{step}");
            let _ = std::fs::remove_dir_all(env.p("out"));
            assert_eq!(code(&env.run("out", false, None)), 0);
            let o = env.run("out", true, Some(&what));
            assert!(killed(&o), "{what}: not killed: {}", stderr(&o));
            let after = env.tree("out");
            let left = env.leftovers();
            assert!(!left.is_empty(), "{what}: a kill leaves something behind");
            if *step == "moved-old" {
                // The one instant of the fallback where `--out` is missing.
                assert_eq!(after, None, "{what}");
            } else {
                assert!(
                    after.as_ref() == Some(&old) || after.as_ref() == Some(&new),
                    "{what}: --out is neither the old nor the new output"
                );
            }
            if *step == "moved-old" {
                // Prove that the old output comes back: a run that then fails
                // (exit 2) leaves exactly it.
                let o = env.run("out", true, Some("fail:exchange"));
                assert_eq!(code(&o), 2, "{what}: {}", stderr(&o));
                assert!(
                    stderr(&o).contains("put the previous output back"),
                    "{what}: {}",
                    stderr(&o)
                );
                assert_eq!(env.tree("out").as_ref(), Some(&old), "{what}");
                assert_eq!(env.leftovers(), Vec::<String>::new(), "{what}");
                continue;
            }
            let o = env.run("out", true, None);
            assert_eq!(code(&o), 0, "{what}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("left by an interrupted run"),
                "{what}: the recovery is not reported: {}",
                stderr(&o)
            );
            assert_eq!(env.tree("out").as_ref(), Some(&new), "{what}");
            assert_eq!(env.leftovers(), Vec::<String>::new(), "{what}");
        }
    }
}

/// Each file-system operation of the commit failing: before the new output is
/// in place, exit 2 with `--out` unchanged and nothing left behind; after it,
/// a warning and the next run removes the rest.
#[test]
fn every_failing_rename_or_remove_keeps_the_guarantee() {
    let env = Env::new();
    let (old, new) = env.references();
    for fault in [
        "fail:exchange",
        "no-exchange,fail:move-old",
        "no-exchange,fail:rename-new",
    ] {
        let _ = std::fs::remove_dir_all(env.p("out"));
        assert_eq!(code(&env.run("out", false, None)), 0);
        let o = env.run("out", true, Some(fault));
        assert_eq!(code(&o), 2, "{fault}: {}", stderr(&o));
        assert!(stderr(&o).contains("injected failure"), "{fault}");
        assert_eq!(env.tree("out").as_ref(), Some(&old), "{fault}");
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{fault}");
    }
    // No previous output and the rename fails: still nothing there.
    let _ = std::fs::remove_dir_all(env.p("out"));
    let o = env.run("out", true, Some("fail:first-rename"));
    assert_eq!(code(&o), 2);
    assert_eq!(env.tree("out"), None);
    assert_eq!(env.leftovers(), Vec::<String>::new());
    // The new output is in place, the old one cannot be removed: exit 0.
    for fault in ["fail:remove-old", "no-exchange,fail:remove-old"] {
        let _ = std::fs::remove_dir_all(env.p("out"));
        assert_eq!(code(&env.run("out", false, None)), 0);
        let o = env.run("out", true, Some(fault));
        assert_eq!(code(&o), 0, "{fault}: {}", stderr(&o));
        assert!(stderr(&o).contains("could not remove the previous output"));
        assert_eq!(env.tree("out").as_ref(), Some(&new), "{fault}");
        assert_eq!(env.leftovers().len(), 1, "{fault}");
        // Not while this process is alive: it has exited, so the next run may.
        let o = env.run("out", true, None);
        assert_eq!(code(&o), 0);
        assert!(stderr(&o).contains("left by an interrupted run"), "{fault}");
        assert_eq!(env.leftovers(), Vec::<String>::new(), "{fault}");
    }
    // Both renames of the fallback fail: the old output is kept aside, named
    // in the error, and the next run puts it back before publishing.
    let _ = std::fs::remove_dir_all(env.p("out"));
    assert_eq!(code(&env.run("out", false, None)), 0);
    let o = env.run(
        "out",
        true,
        Some("no-exchange,fail:rename-new,fail:restore-old"),
    );
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("the next run puts it back"),
        "{}",
        stderr(&o)
    );
    let o = env.run("out", true, Some("fail:exchange"));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("put the previous output back"));
    assert_eq!(env.tree("out").as_ref(), Some(&old));
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn foreign_dir_with_manifest_json_is_not_replaced() {
    let env = Env::new();
    // A web app: its own manifest.json.
    std::fs::create_dir(env.p("webapp")).unwrap();
    std::fs::write(
        env.p("webapp/manifest.json"),
        r#"{"name": "My App", "icons": []}"#,
    )
    .unwrap();
    std::fs::write(env.p("webapp/index.html"), "<html></html>").unwrap();
    let before = env.tree("webapp");
    let o = env.run("webapp", true, None);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not a porledger manifest"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.tree("webapp"), before);
    // A manifest that claims to be porledger's but does not list the files.
    std::fs::write(
        env.p("webapp/manifest.json"),
        r#"{"tool": "porledger", "version": "0.1.0", "outputs": []}"#,
    )
    .unwrap();
    let before = env.tree("webapp");
    let o = env.run("webapp", true, None);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("index.html"), "{}", stderr(&o));
    assert_eq!(env.tree("webapp"), before);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn extra_or_changed_files_in_a_previous_output_are_not_deleted() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    std::fs::write(env.p("out/partners/notes.txt"), "my notes").unwrap();
    let before = env.tree("out");
    let o = env.run("out", true, None);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not listed"), "{}", stderr(&o));
    assert_eq!(env.tree("out"), before);
    std::fs::remove_file(env.p("out/partners/notes.txt")).unwrap();
    std::fs::write(env.p("out/summary.csv"), "edited by hand").unwrap();
    let o = env.run("out", true, None);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("summary.csv"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(env.p("out/summary.csv")).unwrap(),
        "edited by hand"
    );
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn empty_directories_of_the_user_in_a_previous_output_are_not_deleted() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let partner = std::fs::read_dir(env.p("out/partners"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let drafts = format!("partners/{}/drafts", partner.to_str().unwrap());
    // (made, named in the refusal, removed after)
    for (made, named, made_top) in [
        ("my-notes/keep", "my-notes", "my-notes"),
        (drafts.as_str(), "drafts", drafts.as_str()),
    ] {
        let before = env.tree("out");
        std::fs::create_dir_all(env.p(&format!("out/{made}"))).unwrap();
        let o = env.run("out", true, None);
        assert_eq!(code(&o), 2, "{made}");
        assert!(stderr(&o).contains(named), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("holds no file of its manifest"),
            "{}",
            stderr(&o)
        );
        assert!(env.p(&format!("out/{made}")).is_dir(), "{made} was removed");
        assert_eq!(env.tree("out"), before);
        std::fs::remove_dir_all(env.p(&format!("out/{made_top}"))).unwrap();
    }
    // Without them, the output is porledger's again and is replaced.
    assert_eq!(code(&env.run("out", true, None)), 0);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn symlink_out_replaces_the_directory_it_points_to() {
    let env = Env::new();
    let (_, new) = env.references();
    assert_eq!(code(&env.run("real", false, None)), 0);
    std::os::unix::fs::symlink("real", env.p("link")).unwrap();
    let o = env.run("link", true, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(env.p("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(env.tree("real").as_ref(), Some(&new));
    assert_eq!(env.leftovers(), Vec::<String>::new());
    // A link to nowhere, or to a file: refused, nothing created.
    std::os::unix::fs::symlink("nowhere", env.p("dangling")).unwrap();
    let o = env.run("dangling", true, None);
    assert_eq!(code(&o), 2);
    assert!(!env.p("nowhere").exists());
    std::os::unix::fs::symlink("in/rules.toml", env.p("to-file")).unwrap();
    assert_eq!(code(&env.run("to-file", true, None)), 2);
    assert!(std::fs::read_to_string(env.p("in/rules.toml")).is_ok());
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn read_only_previous_output_is_refused_with_nothing_changed() {
    use std::os::unix::fs::PermissionsExt;
    fn chmod(dir: &Path, dirs: u32, files: u32) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                chmod(&p, dirs, files);
            } else {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(files)).unwrap();
            }
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dirs)).unwrap();
    }
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let before = env.tree("out");
    chmod(&env.p("out"), 0o555, 0o444);
    let o = env.run("out", true, None);
    chmod(&env.p("out"), 0o755, 0o644);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("write-protected"), "{}", stderr(&o));
    assert_eq!(env.tree("out"), before);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

/// A pid that is certainly not running any more.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn stale_staging_from_a_dead_pid_is_removed() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let dead = dead_pid();
    let stale = format!(".out.porledger-tmp-{dead}");
    // What a run killed while writing leaves: its staging mark and outputs.
    std::fs::create_dir_all(env.p(&stale).join("partners")).unwrap();
    std::fs::write(env.p(&stale).join("ledger.csv"), "x").unwrap();
    std::fs::write(env.p(&stale).join(".porledger-staging"), "").unwrap();
    // A live process's staging and unrelated dot-directories stay.
    let live = format!(".out.porledger-tmp-{}", std::process::id());
    std::fs::create_dir(env.p(&live)).unwrap();
    std::fs::create_dir(env.p(".out.mine")).unwrap();
    std::fs::create_dir(env.p(&format!(".other.porledger-tmp-{dead}"))).unwrap();
    // So does a directory of the user's that is only named like a leftover
    // (no staging mark, no porledger manifest), and one named like an
    // output moved aside.
    let dead2 = dead_pid();
    let mine = format!(".out.porledger-tmp-{dead2}");
    std::fs::create_dir_all(env.p(&mine).join("notes")).unwrap();
    std::fs::write(env.p(&mine).join("notes/keep.txt"), "mine").unwrap();
    let aside = format!(".out.porledger-old-{dead2}");
    std::fs::create_dir(env.p(&aside)).unwrap();
    std::fs::write(env.p(&aside).join("manifest.json"), r#"{"tool": "other"}"#).unwrap();
    // And one holding porledger's manifest beside a file it does not list.
    let with_notes = format!(".out.porledger-tmp-{dead2}.old");
    std::fs::create_dir(env.p(&with_notes)).unwrap();
    std::fs::copy(
        env.p("out").join("manifest.json"),
        env.p(&with_notes).join("manifest.json"),
    )
    .unwrap();
    std::fs::write(env.p(&with_notes).join("NOTES.txt"), "mine").unwrap();
    let o = env.run("out", true, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{stale}, left by an interrupted run (pid {dead})")),
        "{}",
        stderr(&o)
    );
    assert!(!env.p(&stale).exists());
    assert!(env.p(&live).exists());
    assert!(env.p(".out.mine").exists());
    assert!(env.p(&format!(".other.porledger-tmp-{dead}")).exists());
    for foreign in [&mine, &aside, &with_notes] {
        assert!(
            stderr(&o).contains(&format!("{foreign} alone: it is named like")),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(
        std::fs::read_to_string(env.p(&mine).join("notes/keep.txt")).unwrap(),
        "mine"
    );
    assert!(env.p(&aside).join("manifest.json").exists());
    assert_eq!(
        std::fs::read_to_string(env.p(&with_notes).join("NOTES.txt")).unwrap(),
        "mine"
    );
    // The published output holds no staging mark.
    assert!(!env.p("out").join(".porledger-staging").exists());
}

#[test]
fn old_output_left_by_an_older_version_is_put_back() {
    // The previous version's commit, killed between its renames, left only
    // `.out.porledger-tmp-<pid>.old`.
    let env = Env::new();
    let (old, new) = env.references();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let aside = format!(".out.porledger-tmp-{}.old", dead_pid());
    std::fs::rename(env.p("out"), env.p(&aside)).unwrap();
    let o = env.run("out", true, Some("fail:exchange"));
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("put the previous output back"));
    assert_eq!(env.tree("out").as_ref(), Some(&old));
    assert_eq!(code(&env.run("out", true, None)), 0);
    assert_eq!(env.tree("out").as_ref(), Some(&new));
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

fn signal_during_a_run(sig: &str) {
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let before = env.tree("out");
    // The hook holds the run right after the staging directory is made.
    let mut cmd = env.cmd("out", true, Some("sleep:staged"));
    default_signal_actions(&mut cmd);
    let child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let staging = env.p(&format!(".out.porledger-tmp-{}", child.id()));
    let start = std::time::Instant::now();
    while !staging.exists() {
        assert!(start.elapsed().as_secs() < 60, "no staging directory");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let k = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(k.success());
    let o = child.wait_with_output().unwrap();
    assert!(killed(&o), "{sig}: {:?}", o.status);
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(!staging.exists(), "{sig}: staging left behind");
    assert_eq!(env.tree("out"), before, "{sig}");
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

/// Gives the run the default actions for SIGINT and SIGTERM, whatever this
/// test process inherited: a test suite started as a background job of a
/// script (`bash .ci/run &`) has SIGINT ignored, the run inherits that and
/// rightly keeps ignoring it (as `nohup` asks), and the signal would test
/// nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // pre_exec: two signal() calls between fork and exec
fn default_signal_actions(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal() is async-signal-safe; nothing else runs in the child
    // before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn default_signal_actions(_: &mut Command) {}

#[test]
fn sigint_during_a_run_removes_the_staging_directory() {
    signal_during_a_run("-INT");
}

#[test]
fn sigterm_during_a_run_removes_the_staging_directory() {
    signal_during_a_run("-TERM");
}

/// Partner `a/b` and partner `a_b-<hash>` (the name `a/b` used to get) used
/// to share one directory.
#[test]
fn two_ids_colliding_get_distinct_files() {
    use sha2::Digest;
    let env = Env::new();
    let h = sha2::Sha256::digest(b"a/b");
    let other: String = h[..4].iter().map(|b| format!("{b:02x}")).collect();
    let other = format!("a_b-{other}");
    let d = std::fs::read_to_string(env.p("in/designations.csv")).unwrap();
    let d = d
        .replace(",P-A,", ",a/b,")
        .replace(",P-B,", &format!(",{other},"));
    std::fs::write(env.p("in/designations.csv"), d).unwrap();
    let o = env.run("out", true, None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let a = std::fs::read_to_string(env.p("out/partners/a%2Fb/statement.csv")).unwrap();
    let b = std::fs::read_to_string(env.p(&format!("out/partners/{other}/statement.csv"))).unwrap();
    assert!(a.contains("a/b") && !a.contains(&other), "{a}");
    assert!(b.contains(&other), "{b}");
    assert!(env.p("out/partners/a%2Fb/statement.pdf").exists());
    assert!(env
        .p(&format!("out/partners/{other}/statement.pdf"))
        .exists());
}

/// Two IDs that differ only in letter case would be one file on a
/// case-insensitive file system: fatal, not silent.
#[test]
fn ids_differing_only_in_case_are_fatal() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", false, None)), 0);
    let before = env.tree("out");
    let d = std::fs::read_to_string(env.p("in/designations.csv")).unwrap();
    let d = d.replace(",P-A,", ",p-x,").replace(",P-B,", ",P-X,");
    std::fs::write(env.p("in/designations.csv"), d).unwrap();
    let o = env.run("out", true, None);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("letter case"), "{}", stderr(&o));
    assert_eq!(env.tree("out"), before);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn edited_statements_json_makes_render_exit_2() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", true, None)), 0);
    let json = std::fs::read_to_string(env.p("out/statements.json")).unwrap();
    assert!(json.contains("Amsel IT"));
    std::fs::write(
        env.p("out/statements.json"),
        json.replace("Amsel IT", "Amsel XX"),
    )
    .unwrap();
    let before = env.tree("out");
    let o = env.render("out");
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("statements.json"), "{}", stderr(&o));
    assert!(stderr(&o).contains("SHA-256"), "{}", stderr(&o));
    assert_eq!(env.tree("out"), before);
    assert_eq!(env.leftovers(), Vec::<String>::new());
}

#[test]
fn render_checks_every_kept_file_and_lists_exactly_the_new_output() {
    let env = Env::new();
    assert_eq!(code(&env.run("out", true, None)), 0);
    // A kept file changed with its size unchanged: refused.
    let ledger = std::fs::read(env.p("out/ledger.csv")).unwrap();
    crate::common::change_a_digit(env.p("out/ledger.csv"));
    let o = env.render("out");
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("ledger.csv"), "{}", stderr(&o));
    std::fs::write(env.p("out/ledger.csv"), &ledger).unwrap();
    // A manifest listing a path outside the output: refused.
    let m = std::fs::read_to_string(env.p("out/manifest.json")).unwrap();
    let evil = m.replacen("\"path\": \"ledger.csv\"", "\"path\": \"../ledger.csv\"", 1);
    assert_ne!(evil, m);
    std::fs::write(env.p("out/manifest.json"), &evil).unwrap();
    assert_eq!(code(&env.render("out")), 2);
    std::fs::write(env.p("out/manifest.json"), &m).unwrap();
    // A clean render: the manifest lists exactly the files there are.
    let o = env.render("out");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.p("out/manifest.json")).unwrap()).unwrap();
    let listed: std::collections::BTreeSet<String> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let mut present: std::collections::BTreeSet<String> =
        env.tree("out").unwrap().into_keys().collect();
    present.remove("manifest.json");
    assert_eq!(listed, present);
    // And it can be rendered again.
    assert_eq!(code(&env.render("out")), 0);
}

/// `nohup` or a script's background job ignores SIGINT: the run must too.
#[test]
fn an_ignored_sigint_stays_ignored() {
    let env = Env::new();
    let run = env.cmd("out", true, Some("sleep:staged"));
    let args: Vec<String> = run
        .get_args()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let script = format!(
        "trap '' INT; exec '{}' {}",
        run.get_program().to_string_lossy(),
        args.join(" ")
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(env.dir.path())
        .env("PORLEDGER_FAULT_AT", "sleep:staged")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = env.p(&format!(".out.porledger-tmp-{}", child.id()));
    let start = std::time::Instant::now();
    while !staging.exists() {
        assert!(start.elapsed().as_secs() < 60, "no staging directory");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "SIGINT ended the run");
    assert!(staging.exists());
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert!(killed(&o));
    assert!(!staging.exists());
}
