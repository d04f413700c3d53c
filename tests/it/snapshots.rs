//! Snapshots (insta) of what partners and customers receive from the three
//! committed sample runs of `sample-data/README.md`: `summary.csv`, every
//! statement CSV under `partners/` (partner statements, customer transparency
//! statements, attainment reports), and the text of every PDF
//! (`pdftotext -layout`), plus the list of files each run writes.
//!
//! A behaviour change shows up as a diff of `tests/it/snapshots/*.snap` to
//! review (see `tests/README.md`). Snapshot names are `<run>/<path in the
//! output>` (`main/partners/500275/statement.csv`), stored as
//! `main__partners__500275__statement.csv.snap`; PDF text gets `.txt` appended.
//! The hand-derived amounts of `sample-data/README.md` stay asserted one by
//! one in `sample_data.rs`.

use std::path::Path;

use crate::common::{assert_crlf, pdftext, run_sample, tree, Sample};

/// Snapshots one sample run's statements. Files are visited in path order.
fn snapshot_run(sample: Sample) {
    let dir = run_sample(sample, &["--quiet"]);
    let out = dir.path().join("out");
    let files = tree(&out);
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| {
        // The list of files: a statement that disappears fails here.
        let listing: Vec<&str> = files.keys().map(String::as_str).collect();
        insta::assert_snapshot!(format!("{}/files", sample.name()), listing.join("\n"));
        for (path, bytes) in &files {
            let is_statement = path == "summary.csv"
                || path.starts_with("partners/")
                || path.starts_with("customers/");
            if !is_statement {
                continue;
            }
            let name = format!("{}/{path}", sample.name());
            if path.ends_with(".csv") {
                let text = String::from_utf8(bytes.clone())
                    .unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
                assert_crlf(&name, &text);
                insta::assert_snapshot!(name, text);
            } else if path.ends_with(".pdf") {
                let text = pdftext(&out.join(Path::new(path)));
                insta::assert_snapshot!(format!("{name}.txt"), text);
            } else {
                panic!("{name}: a statement file this test does not know; add it here");
            }
        }
    });
}

#[test]
fn main_sample_statements() {
    snapshot_run(Sample::Main);
}

#[test]
fn hard_cases_sample_statements() {
    snapshot_run(Sample::Hard);
}

#[test]
fn usage_sample_statements() {
    snapshot_run(Sample::Usage);
}
