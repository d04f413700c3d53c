//! Statement templates: data, not code.
//!
//! A template is a directory: `template.toml` (page, fonts, style, section
//! order, column sets), `locales/<locale>.toml` (labels, paragraphs, number,
//! amount and date formats) and the font files `template.toml` names. The
//! repository's `templates/` is embedded into the binary so that it works from
//! any directory; `--template DIR` loads another one from disk without
//! recompiling.
//!
//! Every table uses `deny_unknown_fields`, so a misspelt key is an error (exit
//! code 2) that names the file, the line and the key, never a silently ignored
//! setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::Fatal;
use crate::ingest::hex;

/// The built-in template: the repository's `templates/` at compile time.
const EMBEDDED: &[(&str, &[u8])] = &[
    (
        "template.toml",
        include_bytes!("../../../templates/template.toml"),
    ),
    (
        "locales/de.toml",
        include_bytes!("../../../templates/locales/de.toml"),
    ),
    (
        "locales/en.toml",
        include_bytes!("../../../templates/locales/en.toml"),
    ),
    (
        "fonts/DejaVuSans.ttf",
        include_bytes!("../../../templates/fonts/DejaVuSans.ttf"),
    ),
    (
        "fonts/DejaVuSans-Bold.ttf",
        include_bytes!("../../../templates/fonts/DejaVuSans-Bold.ttf"),
    ),
];

/// Where template files come from.
#[derive(Clone, Debug)]
pub enum Source {
    Embedded,
    Dir(PathBuf),
}

impl Source {
    /// How the file is named in messages: the path on disk, or
    /// `(built-in template)/<rel>`.
    fn display(&self, rel: &str) -> String {
        match self {
            Source::Embedded => format!("(built-in template)/{rel}"),
            Source::Dir(d) => d.join(rel).display().to_string(),
        }
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, Fatal> {
        match self {
            Source::Embedded => EMBEDDED
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| Fatal::Config {
                    file: self.display(rel),
                    message: "the built-in template has no such file".into(),
                }),
            Source::Dir(d) => {
                // Bounded, regular files only: a template directory given by
                // the user could hold a FIFO or /dev/zero under a font's name.
                let p = d.join(rel);
                crate::ingest::read_limited(&p, crate::ingest::limits::TEMPLATE_FILE, "template")
                    .map_err(|e| Fatal::Config {
                        file: p.display().to_string(),
                        message: format!("cannot read template file: {e}"),
                    })
            }
        }
    }
}

/// `template.toml`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub name: String,
    pub page: PageSpec,
    pub fonts: FontSpec,
    pub style: Style,
    #[serde(default)]
    pub logo: Option<Logo>,
    pub partner_statement: PartnerSpec,
    pub transparency: TransparencySpec,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PageSpec {
    pub width_mm: f32,
    pub height_mm: f32,
    pub margin_top_mm: f32,
    pub margin_bottom_mm: f32,
    pub margin_left_mm: f32,
    pub margin_right_mm: f32,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FontSpec {
    /// Path of a TrueType file, relative to the template directory.
    pub regular: String,
    pub bold: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Style {
    pub title_size: f32,
    pub heading_size: f32,
    pub body_size: f32,
    pub table_size: f32,
    pub footer_size: f32,
    /// Line height as a multiple of the font size.
    pub line_height: f32,
    pub accent_color: String,
    pub rule_color: String,
    pub header_fill: String,
    pub subtotal_fill: String,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogoPosition {
    TopLeft,
    TopCenter,
    TopRight,
}

/// A text logo (the PDF build has no image support, to keep it small and fast).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Logo {
    pub text: String,
    pub position: LogoPosition,
    pub size: f32,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    Left,
    Right,
}

/// One column of a table: which value, its relative width, its alignment
/// (default: numbers right, text left).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Column<F> {
    pub field: F,
    /// Relative width; the columns of a table share the text width in proportion.
    pub width: f32,
    #[serde(default)]
    pub align: Option<Align>,
}

/// Columns of the summary table of a partner statement.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SummaryField {
    Program,
    Currency,
    Lines,
    Basis,
    Amount,
}

/// Columns of a table of detail lines (partner statement per customer, and the
/// earnings table of a transparency statement).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineField {
    Subscription,
    Program,
    /// The accrual month.
    Month,
    Association,
    Currency,
    Lines,
    Basis,
    Rate,
    Share,
    Amount,
}

/// Columns of the designations table of a transparency statement.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DesignationField {
    Association,
    Subscription,
    Workload,
    Share,
    ValidFrom,
    ValidTo,
}

/// Sections of a partner statement, in template order. A section with no data
/// (today: `attainment`, which a later version fills) is simply omitted.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PartnerSection {
    Header,
    Summary,
    Customers,
    Attainment,
    Totals,
}

/// Sections of a transparency statement. `designations` and `earnings` are
/// per partner: consecutive per-partner sections are repeated for every partner
/// that earned on the customer.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TransparencySection {
    Address,
    Intro,
    Designations,
    Earnings,
    Programs,
    Closing,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    pub sections: Vec<PartnerSection>,
    pub summary_columns: Vec<Column<SummaryField>>,
    pub customer_columns: Vec<Column<LineField>>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TransparencySpec {
    pub sections: Vec<TransparencySection>,
    pub designation_columns: Vec<Column<DesignationField>>,
    pub earning_columns: Vec<Column<LineField>>,
}

/// `locales/<locale>.toml`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LocaleSpec {
    pub format: FormatSpec,
    pub labels: Labels,
    pub columns: ColumnLabels,
    pub associations: AssociationLabels,
    pub paragraphs: Paragraphs,
    /// The adjustment statement of a restatement (`run --history`); what a
    /// locale file leaves out is English (see `ENGLISH_FALLBACK`).
    pub adjustment: AdjustmentLabels,
    /// The tie-out page (`porledger tieout`); what a locale file leaves out
    /// is English.
    pub tieout: TieoutLabels,
}

/// What a locale file may leave out, taken then from the built-in
/// `locales/en.toml`: whole tables (`[tieout]`, `[adjustment]`: every key a
/// table leaves out) and single keys of `[labels]` added after the first
/// templates were written. The wording exists once, in en.toml.
const ENGLISH_FALLBACK: &[(&str, Option<&str>)] = &[
    ("tieout", None),
    ("adjustment", None),
    ("labels", Some("months_total")),
    ("labels", Some("by_month")),
    ("labels", Some("decimals")),
    ("labels", Some("converted_totals")),
    ("labels", Some("converted_total")),
    ("labels", Some("fx_rate")),
    ("labels", Some("fx_rate_date")),
    ("labels", Some("converted_amount")),
];

/// The words of the tie-out page. Placeholders: `{n}` and `{of}` counts,
/// `{partner}` and `{period}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TieoutLabels {
    pub title: String,
    pub run_period: String,
    pub as_of: String,
    pub tolerance: String,
    pub intro: String,
    pub expected: String,
    pub paid: String,
    pub adjustments: String,
    pub difference: String,
    pub rows_differing: String,
    /// `{n}` of `{of}` rows.
    pub n_of: String,
    pub all_tie: String,
    pub differences: String,
    pub row: String,
    pub class: String,
    pub customer_reason: String,
    /// `{n}` more differing rows (plural form; `more_one` for one).
    pub more: String,
    pub more_one: String,
    /// `{n}` expected rows not yet due (plural; `not_yet_due_one` for one).
    pub not_yet_due: String,
    pub not_yet_due_one: String,
    pub explain_hint: String,
    /// `{partner}`, `{period}`: the PDF's document title.
    pub document_title: String,
    /// The classes of `tieout.csv`, in words.
    pub matched: String,
    pub underpaid: String,
    pub overpaid: String,
    pub rate_differs: String,
    pub expected_not_paid: String,
    pub paid_not_expected: String,
    pub adjustment: String,
}

/// `[adjustment]`: wording of the adjustment statement. Placeholders:
/// `{partner_name}`, `{period}`, `{version}` (the issued version),
/// `{next}` (the version a close of this run records); in the reasons
/// `{line}`, `{association}`, `{valid}`, `{role}`, `{path}`, `{from}`, `{to}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentLabels {
    pub title: String,
    pub intro: String,
    pub issued_version: String,
    pub this_run: String,
    pub this_run_value: String,
    pub lines: String,
    pub previously: String,
    pub now: String,
    pub difference: String,
    pub reasons_column: String,
    pub reasons: String,
    pub untraced: String,
    pub designation_gone: String,
    pub designation_new: String,
    pub input_removed: String,
    pub input_changed: String,
    pub input_added: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FormatSpec {
    pub decimal_separator: String,
    pub group_separator: String,
    /// chrono strftime, e.g. `%d.%m.%Y`.
    pub date: String,
    /// `{amount}`, `{symbol}`, `{code}`: `{amount} {symbol}` or `{symbol}{amount}`.
    pub amount: String,
    /// For a currency without an entry in `currency_symbols`.
    pub amount_without_symbol: String,
    /// `{value}`: `{value} %`.
    pub percent: String,
    #[serde(default)]
    pub currency_symbols: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Labels {
    pub partner_statement_title: String,
    pub transparency_title: String,
    pub partner: String,
    pub partner_id: String,
    pub period: String,
    pub statement_date: String,
    pub currencies: String,
    pub summary: String,
    pub customers: String,
    pub customer: String,
    pub tenant_id: String,
    pub program_total: String,
    pub totals: String,
    pub total_in: String,
    pub page: String,
    pub continued: String,
    pub all_subscriptions: String,
    pub all_workloads: String,
    pub various: String,
    pub equal_split: String,
    pub open_ended: String,
    pub not_recorded: String,
    pub addressed_to: String,
    pub designations: String,
    pub earnings: String,
    pub programs: String,
    pub attainment: String,
    /// Heading of the tier-rate table (how attainment chose a tiered rate).
    pub tier_rates: String,
    /// `{program}`: the closing row of a tier decision.
    pub tier_rate: String,
    /// `{units}`: a usage program's basis where the column says "Basis".
    pub units: String,
    /// Attainment when the paid seats are 0.
    pub not_computable: String,
    /// No usage target reached.
    pub no_target: String,
    /// `{program}`: the row closing a program's month lines (the sum of its
    /// rounded months), when it has more than one.
    pub months_total: String,
    /// Heading of the bar chart of the amount accrued per month.
    pub by_month: String,
    /// `{currencies}`, `{decimals}`: how many decimals the statement's
    /// currencies are rounded to (`{minor_units}` in `partner_intro`).
    pub decimals: String,
    /// `{currency}`: heading of the totals converted with `--fx`.
    pub converted_totals: String,
    /// `{currency}`: the sum of the converted totals.
    pub converted_total: String,
    /// Column of the FX rate of a converted total.
    pub fx_rate: String,
    /// Column of the date the FX rate was published.
    pub fx_rate_date: String,
    /// `{currency}`: column of a total in the reporting currency.
    pub converted_amount: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ColumnLabels {
    pub program: String,
    pub currency: String,
    pub lines: String,
    pub basis: String,
    pub amount: String,
    pub subscription: String,
    pub association: String,
    pub rate: String,
    pub share: String,
    pub workload: String,
    pub valid_from: String,
    pub valid_to: String,
    /// Basis column of a usage program's lines (a count of units).
    pub compensable_units: String,
    /// Rate column of a usage program's lines (an amount per unit).
    pub per_unit: String,
    pub month: String,
    pub product: String,
    /// Compensable units in the attainment table.
    pub units: String,
    pub mau: String,
    pub pau: String,
    pub attainment: String,
    pub target: String,
    pub prior_high: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)]
pub struct AssociationLabels {
    pub POR: String,
    pub DPOR: String,
    pub CPOR: String,
    pub PAL: String,
    pub RESELLER: String,
    pub TIER1: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Paragraphs {
    pub partner_intro: String,
    pub transparency_intro: String,
    pub designations_intro: String,
    pub no_designation: String,
    pub earnings_intro: String,
    pub programs_intro: String,
    pub no_description: String,
    pub basis_billed_revenue: String,
    pub basis_usage: String,
    pub attainment_intro: String,
    pub tier_intro: String,
    pub closing: String,
}

/// One template file that went into a document, for the manifest.
#[derive(Serialize, Clone, Debug)]
pub struct TemplateFile {
    pub path: String,
    pub sha256: String,
}

/// What the manifest records about the template: enough to tell whether two
/// runs used the same wording, formats and fonts.
#[derive(Serialize, Clone, Debug)]
pub struct TemplateInfo {
    pub name: String,
    /// `built-in` or the `--template` directory.
    pub source: String,
    pub locale: String,
    /// SHA-256 over the files below (path, length and bytes, in path order).
    pub sha256: String,
    pub files: Vec<TemplateFile>,
}

/// A loaded, validated template for one locale, with the raw font bytes.
#[derive(Debug)]
pub struct Loaded {
    pub spec: TemplateSpec,
    pub locale: LocaleSpec,
    pub regular_font: Vec<u8>,
    pub bold_font: Vec<u8>,
    pub info: TemplateInfo,
}

/// Line and column (1-based) of a byte offset, for messages.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn parse_toml<T: DeserializeOwned>(src: &Source, rel: &str, bytes: &[u8]) -> Result<T, Fatal> {
    let text = utf8(src, rel, bytes)?;
    toml::from_str(text).map_err(|e| toml_error(src, rel, text, &e))
}

fn utf8<'a>(src: &Source, rel: &str, bytes: &'a [u8]) -> Result<&'a str, Fatal> {
    std::str::from_utf8(bytes).map_err(|_| Fatal::Config {
        file: src.display(rel),
        message: "not valid UTF-8".into(),
    })
}

/// A TOML error with the line and column of its span in `text`.
fn toml_error(src: &Source, rel: &str, text: &str, e: &toml::de::Error) -> Fatal {
    let at = e
        .span()
        .map(|s| {
            let (l, c) = line_col(text, s.start);
            format!("line {l}, column {c}: ")
        })
        .unwrap_or_default();
    Fatal::Config {
        file: src.display(rel),
        message: format!("{at}{}", e.message().trim()),
    }
}

/// A locale file, with what it may leave out ([`ENGLISH_FALLBACK`]) taken
/// from the built-in en.toml. The merge happens on the parsed document, so
/// an error in the file still names its line and column.
fn parse_locale(src: &Source, rel: &str, bytes: &[u8]) -> Result<LocaleSpec, Fatal> {
    use toml::de::{DeTable, DeValue};
    let en_rel = "locales/en.toml";
    let en_bytes = Source::Embedded.read(en_rel)?;
    let en_text = utf8(&Source::Embedded, en_rel, &en_bytes)?;
    let en = DeTable::parse(en_text)
        .map_err(|e| toml_error(&Source::Embedded, en_rel, en_text, &e))?
        .into_inner();
    let text = utf8(src, rel, bytes)?;
    let mut doc = DeTable::parse(text).map_err(|e| toml_error(src, rel, text, &e))?;
    for (table, key) in ENGLISH_FALLBACK {
        let Some((en_name, en_value)) = en.get_key_value(*table) else {
            continue;
        };
        let DeValue::Table(en_table) = en_value.get_ref() else {
            continue;
        };
        let doc = doc.get_mut();
        if !doc.contains_key(*table) {
            let empty = Spanned::new(en_value.span(), DeValue::Table(DeTable::new()));
            doc.insert(en_name.clone(), empty);
        }
        // A `tieout = 3` stays as it is: deserializing reports it.
        let Some(DeValue::Table(t)) = doc.get_mut(*table).map(Spanned::get_mut) else {
            continue;
        };
        for (k, v) in en_table.iter() {
            let wanted = key.is_none_or(|only| k.get_ref() == only);
            if wanted && !t.contains_key(k.get_ref().as_ref()) {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    LocaleSpec::deserialize(toml::de::Deserializer::from(doc))
        .map_err(|e| toml_error(src, rel, text, &e))
}

fn bad(src: &Source, rel: &str, key: &str, problem: impl std::fmt::Display) -> Fatal {
    Fatal::Config {
        file: src.display(rel),
        message: format!("{key}: {problem}"),
    }
}

/// Parses `#rrggbb` into 0..1 RGB.
pub fn parse_color(s: &str) -> Option<[f32; 3]> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let c = |i: usize| {
        u8::from_str_radix(&h[i..i + 2], 16)
            .ok()
            .map(|v| v as f32 / 255.0)
    };
    Some([c(0)?, c(2)?, c(4)?])
}

/// A locale name is a file name under `locales/`: letters, digits, `-`, `_`.
fn check_locale_name(locale: &str) -> Result<(), Fatal> {
    if locale.is_empty()
        || locale.len() > 16
        || !locale
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Fatal::Input(format!(
            "--locale '{locale}': expected a locale name such as de or en"
        )));
    }
    Ok(())
}

fn validate_spec(src: &Source, t: &TemplateSpec) -> Result<(), Fatal> {
    validate_page(src, t)?;
    validate_style(src, t)?;
    validate_layout(src, t)
}

/// `[page]`: size and margins in mm.
fn validate_page(src: &Source, t: &TemplateSpec) -> Result<(), Fatal> {
    let f = "template.toml";
    let p = &t.page;
    for (k, v) in [
        ("page.width_mm", p.width_mm),
        ("page.height_mm", p.height_mm),
    ] {
        if !(50.0..=2000.0).contains(&v) {
            return Err(bad(
                src,
                f,
                k,
                format!("{v} is not a page size in mm (50 to 2000)"),
            ));
        }
    }
    for (k, v) in [
        ("page.margin_top_mm", p.margin_top_mm),
        ("page.margin_bottom_mm", p.margin_bottom_mm),
        ("page.margin_left_mm", p.margin_left_mm),
        ("page.margin_right_mm", p.margin_right_mm),
    ] {
        if !(0.0..=200.0).contains(&v) {
            return Err(bad(
                src,
                f,
                k,
                format!("{v} is not a margin in mm (0 to 200)"),
            ));
        }
    }
    if p.width_mm - p.margin_left_mm - p.margin_right_mm < 60.0
        || p.height_mm - p.margin_top_mm - p.margin_bottom_mm < 60.0
    {
        return Err(bad(
            src,
            f,
            "page",
            "the margins leave less than 60 mm of text width or height",
        ));
    }
    Ok(())
}

/// `[style]` and `[logo]`: font sizes, line height, colours.
fn validate_style(src: &Source, t: &TemplateSpec) -> Result<(), Fatal> {
    let f = "template.toml";
    let s = &t.style;
    for (k, v) in [
        ("style.title_size", s.title_size),
        ("style.heading_size", s.heading_size),
        ("style.body_size", s.body_size),
        ("style.table_size", s.table_size),
        ("style.footer_size", s.footer_size),
    ] {
        if !(4.0..=48.0).contains(&v) {
            return Err(bad(
                src,
                f,
                k,
                format!("{v} is not a font size in pt (4 to 48)"),
            ));
        }
    }
    if !(1.0..=3.0).contains(&s.line_height) {
        return Err(bad(src, f, "style.line_height", "expected 1.0 to 3.0"));
    }
    for (k, v) in [
        ("style.accent_color", &s.accent_color),
        ("style.rule_color", &s.rule_color),
        ("style.header_fill", &s.header_fill),
        ("style.subtotal_fill", &s.subtotal_fill),
    ] {
        if parse_color(v).is_none() {
            return Err(bad(
                src,
                f,
                k,
                format!("'{v}' is not a colour of the form #rrggbb"),
            ));
        }
    }
    if let Some(l) = &t.logo {
        if !(4.0..=48.0).contains(&l.size) {
            return Err(bad(
                src,
                f,
                "logo.size",
                "expected a font size in pt (4 to 48)",
            ));
        }
    }
    Ok(())
}

/// Table columns, sections and font paths.
fn validate_layout(src: &Source, t: &TemplateSpec) -> Result<(), Fatal> {
    let f = "template.toml";
    fn cols<F>(src: &Source, key: &str, c: &[Column<F>]) -> Result<(), Fatal> {
        if c.is_empty() {
            return Err(bad(src, "template.toml", key, "needs at least one column"));
        }
        for (i, col) in c.iter().enumerate() {
            if !(col.width > 0.0 && col.width <= 1000.0) {
                return Err(bad(
                    src,
                    "template.toml",
                    &format!("{key}[{i}].width"),
                    "expected a positive relative width",
                ));
            }
        }
        Ok(())
    }
    cols(
        src,
        "partner_statement.summary_columns",
        &t.partner_statement.summary_columns,
    )?;
    cols(
        src,
        "partner_statement.customer_columns",
        &t.partner_statement.customer_columns,
    )?;
    cols(
        src,
        "transparency.designation_columns",
        &t.transparency.designation_columns,
    )?;
    cols(
        src,
        "transparency.earning_columns",
        &t.transparency.earning_columns,
    )?;
    if t.partner_statement.sections.is_empty() {
        return Err(bad(
            src,
            f,
            "partner_statement.sections",
            "lists no section",
        ));
    }
    if t.transparency.sections.is_empty() {
        return Err(bad(src, f, "transparency.sections", "lists no section"));
    }
    for (k, v) in [
        ("fonts.regular", &t.fonts.regular),
        ("fonts.bold", &t.fonts.bold),
    ] {
        if Path::new(v).is_absolute() || v.split(['/', '\\']).any(|c| c == "..") {
            return Err(bad(
                src,
                f,
                k,
                "must be a path inside the template directory (relative, no ..)",
            ));
        }
    }
    Ok(())
}

fn validate_locale(src: &Source, rel: &str, l: &LocaleSpec) -> Result<(), Fatal> {
    use chrono::format::{Item, StrftimeItems};
    let f = &l.format;
    if StrftimeItems::new(&f.date).any(|i| matches!(i, Item::Error)) || f.date.is_empty() {
        return Err(bad(
            src,
            rel,
            "format.date",
            format!(
                "'{}' is not a valid date format (chrono strftime, e.g. %d.%m.%Y)",
                f.date
            ),
        ));
    }
    // Each pattern holds its number's placeholder once, and its own text
    // (without the placeholders) nothing that would change the number.
    let symbols = ["{symbol}", "{code}"];
    for (k, v, placeholder, others) in [
        ("format.amount", &f.amount, "{amount}", &symbols[..]),
        (
            "format.amount_without_symbol",
            &f.amount_without_symbol,
            "{amount}",
            &symbols[..],
        ),
        ("format.percent", &f.percent, "{value}", &[][..]),
    ] {
        if v.matches(placeholder).count() != 1 {
            return Err(bad(
                src,
                rel,
                k,
                format!("'{v}' must hold the {placeholder} placeholder once"),
            ));
        }
        let rest = others
            .iter()
            .fold(v.replace(placeholder, ""), |rest, o| rest.replace(o, ""));
        if let Some(c) = changes_numbers(&rest) {
            return Err(bad(src, rel, k, numbers_changed(v, c)));
        }
    }
    if f.decimal_separator.is_empty() || f.decimal_separator == f.group_separator {
        return Err(bad(
            src,
            rel,
            "format.decimal_separator",
            "must be non-empty and differ from format.group_separator",
        ));
    }
    for (k, v) in [
        ("format.decimal_separator", &f.decimal_separator),
        ("format.group_separator", &f.group_separator),
    ] {
        if let Some(c) = changes_numbers(v) {
            return Err(bad(src, rel, k, numbers_changed(v, c)));
        }
    }
    for (code, symbol) in &f.currency_symbols {
        if let Some(c) = changes_numbers(symbol) {
            let k = format!("format.currency_symbols.{code}");
            return Err(bad(src, rel, &k, numbers_changed(symbol, c)));
        }
    }
    Ok(())
}

/// A character of a locale's own text (separators, symbols, the text around
/// a placeholder) that would change the numbers a statement prints: a digit,
/// a sign or a parenthesis (a negative in accounting notation). A locale
/// changes how the statement's numbers are written, never what they are.
fn changes_numbers(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| c.is_numeric() || matches!(c, '-' | '+' | '\u{2212}' | '(' | ')'))
}

fn numbers_changed(text: &str, c: char) -> String {
    format!(
        "'{text}' holds '{c}', which would change the numbers printed (a locale may change \
         only how they are written: separators, symbols, their order)"
    )
}

/// Loads and validates a template for `locale`. Errors are [`Fatal::Config`]
/// naming the file and the key (exit code 2).
pub fn load(dir: Option<&Path>, locale: &str) -> Result<Loaded, Fatal> {
    check_locale_name(locale)?;
    let src = match dir {
        Some(d) => Source::Dir(d.to_path_buf()),
        None => Source::Embedded,
    };
    if let Source::Dir(d) = &src {
        if !d.join("template.toml").is_file() {
            return Err(Fatal::Config {
                file: d.display().to_string(),
                message: "not a template directory (no template.toml)".into(),
            });
        }
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let spec_bytes = src.read("template.toml")?;
    let spec: TemplateSpec = parse_toml(&src, "template.toml", &spec_bytes)?;
    validate_spec(&src, &spec)?;
    files.push(("template.toml".into(), spec_bytes));
    let loc_rel = format!("locales/{locale}.toml");
    let loc_bytes = src.read(&loc_rel).map_err(|e| match e {
        Fatal::Config { file, .. } => Fatal::Config {
            file,
            message: format!("no locale '{locale}' in this template"),
        },
        e => e,
    })?;
    let loc = parse_locale(&src, &loc_rel, &loc_bytes)?;
    validate_locale(&src, &loc_rel, &loc)?;
    files.push((loc_rel, loc_bytes));
    let regular_font = src.read(&spec.fonts.regular)?;
    let bold_font = src.read(&spec.fonts.bold)?;
    files.push((spec.fonts.regular.clone(), regular_font.clone()));
    files.push((spec.fonts.bold.clone(), bold_font.clone()));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    let mut all = Sha256::new();
    let mut listed = Vec::new();
    for (path, bytes) in &files {
        all.update(path.as_bytes());
        all.update([0]);
        all.update((bytes.len() as u64).to_le_bytes());
        all.update(bytes);
        listed.push(TemplateFile {
            path: path.clone(),
            sha256: crate::ingest::sha256_hex(bytes),
        });
    }
    let info = TemplateInfo {
        name: spec.name.clone(),
        source: match &src {
            Source::Embedded => "built-in".into(),
            Source::Dir(d) => d.display().to_string(),
        },
        locale: locale.to_string(),
        sha256: hex(&all.finalize()),
        files: listed,
    };
    Ok(Loaded {
        spec,
        locale: loc,
        regular_font,
        bold_font,
        info,
    })
}

/// Reports a font file that does not parse, naming the key.
pub fn font_error(dir: Option<&Path>, key: &str, path: &str) -> Fatal {
    let src = match dir {
        Some(d) => Source::Dir(d.to_path_buf()),
        None => Source::Embedded,
    };
    bad(
        &src,
        "template.toml",
        key,
        format!("'{path}' is not a TrueType/OpenType font"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_template_loads_in_both_locales() {
        for l in ["de", "en"] {
            let t = load(None, l).unwrap();
            assert_eq!(t.info.locale, l);
            assert_eq!(t.info.files.len(), 4);
            assert!(!t.regular_font.is_empty());
        }
    }

    #[test]
    fn unknown_locale_and_bad_names_are_errors() {
        assert!(matches!(load(None, "fr"), Err(Fatal::Config { .. })));
        assert!(matches!(load(None, "../x"), Err(Fatal::Input(_))));
    }

    #[test]
    fn a_misspelt_key_names_file_line_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, bytes) in EMBEDDED {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let p = tmp.path().join("locales/en.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("decimal_separator", "decimal_seperator")).unwrap();
        let e = load(Some(tmp.path()), "en").unwrap_err().to_string();
        assert!(e.contains("en.toml"), "{e}");
        assert!(e.contains("decimal_seperator"), "{e}");
        assert!(e.contains("line "), "{e}");
    }

    /// A copy of the built-in template whose `locales/xx.toml` is the German
    /// locale changed by `edit`.
    fn custom_locale(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (rel, bytes) in EMBEDDED {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let de = std::fs::read_to_string(tmp.path().join("locales/de.toml")).unwrap();
        std::fs::write(tmp.path().join("locales/xx.toml"), edit(&de)).unwrap();
        tmp
    }

    /// `text` without the table `[name]` (up to the next table header).
    fn without_table(text: &str, name: &str) -> String {
        let mut out = String::new();
        let mut skip = false;
        for line in text.lines() {
            if line.starts_with('[') {
                skip = line.trim() == format!("[{name}]");
            }
            if !skip {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// A locale writes the statement's numbers, never changes them: a digit
    /// as a separator, a sign or a digit around a placeholder, a placeholder
    /// twice, or a digit in a currency symbol is refused, naming the key.
    #[test]
    fn a_locale_that_would_change_the_numbers_is_refused() {
        for (from, to, key) in [
            (
                "group_separator = \".\"",
                "group_separator = \"0\"",
                "format.group_separator",
            ),
            (
                "decimal_separator = \",\"",
                "decimal_separator = \"5\"",
                "format.decimal_separator",
            ),
            (
                "amount = \"{amount} {symbol}\"",
                "amount = \"-{amount} {symbol}\"",
                "format.amount",
            ),
            (
                "amount = \"{amount} {symbol}\"",
                "amount = \"({amount}) {symbol}\"",
                "format.amount",
            ),
            (
                "amount = \"{amount} {symbol}\"",
                "amount = \"{amount}{amount} {symbol}\"",
                "format.amount",
            ),
            (
                "amount_without_symbol = \"{amount} {code}\"",
                "amount_without_symbol = \"{amount}0 {code}\"",
                "format.amount_without_symbol",
            ),
            (
                "percent = \"{value} %\"",
                "percent = \"{value}0 %\"",
                "format.percent",
            ),
            (
                "\n[format.currency_symbols]",
                "\n[format.currency_symbols]\nXAU = \"1 oz\"",
                "format.currency_symbols.XAU",
            ),
        ] {
            let tmp = custom_locale(|de| {
                assert!(de.contains(from), "{from}");
                de.replacen(from, to, 1)
            });
            let e = match load(Some(tmp.path()), "xx") {
                Ok(_) => panic!("{to} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(&format!("{key}:")), "{to}: {e}");
        }
        // The shipped locales pass.
        load(None, "de").unwrap();
        load(None, "en").unwrap();
    }

    #[test]
    fn what_a_locale_leaves_out_is_english_from_en_toml() {
        let en = load(None, "en").unwrap().locale;
        // No [tieout], no [adjustment], no labels.months_total.
        let tmp = custom_locale(|de| {
            let t = without_table(&without_table(de, "tieout"), "adjustment");
            t.lines()
                .filter(|l| !l.starts_with("months_total"))
                .collect::<Vec<_>>()
                .join("\n")
        });
        let xx = load(Some(tmp.path()), "xx").unwrap().locale;
        assert_eq!(xx.tieout.title, en.tieout.title);
        assert_eq!(xx.tieout.underpaid, en.tieout.underpaid);
        assert_eq!(xx.adjustment.intro, en.adjustment.intro);
        assert_eq!(xx.labels.months_total, en.labels.months_total);
        // The rest stays German.
        assert_eq!(xx.labels.by_month, "Abgegrenzt nach Monat");
        assert_eq!(xx.format.decimal_separator, ",");
    }

    #[test]
    fn a_partial_table_keeps_its_keys_and_gets_the_missing_ones_in_english() {
        let en = load(None, "en").unwrap().locale;
        let tmp = custom_locale(|de| {
            de.lines()
                .filter(|l| !l.starts_with("underpaid ") && !l.starts_with("untraced "))
                .collect::<Vec<_>>()
                .join("\n")
        });
        let xx = load(Some(tmp.path()), "xx").unwrap().locale;
        assert_eq!(xx.tieout.underpaid, en.tieout.underpaid);
        assert_eq!(xx.tieout.overpaid, "zu viel");
        assert_eq!(xx.adjustment.untraced, en.adjustment.untraced);
        assert_eq!(xx.adjustment.title, "Korrekturabrechnung");
    }

    #[test]
    fn a_misspelt_key_in_a_table_with_english_fallback_names_its_line() {
        let tmp = custom_locale(|de| de.replace("\nunderpaid =", "\nunderpayed ="));
        let e = load(Some(tmp.path()), "xx").unwrap_err().to_string();
        assert!(e.contains("xx.toml"), "{e}");
        assert!(e.contains("underpayed"), "{e}");
        let text = std::fs::read_to_string(tmp.path().join("locales/xx.toml")).unwrap();
        let line = text
            .lines()
            .position(|l| l.starts_with("underpayed"))
            .unwrap()
            + 1;
        assert!(e.contains(&format!("line {line},")), "{e}");
    }

    #[test]
    fn colours() {
        assert_eq!(parse_color("#ff0000"), Some([1.0, 0.0, 0.0]));
        assert_eq!(parse_color("red"), None);
    }
}
