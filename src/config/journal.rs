//! The `[journal]` table of the rules: the general-ledger accounts and cost
//! centre of `journal.csv` (see docs/rules.md), defaults and per-program
//! overrides.

use std::collections::BTreeMap;

use super::raw::{RawJournal, RawJournalAccounts};
use super::{invalid, Program, RulesError};

/// The expense account debited when nothing is configured.
pub const DEFAULT_DEBIT_ACCOUNT: &str = "incentive-expense";
/// The accrued-liability account credited when nothing is configured.
pub const DEFAULT_CREDIT_ACCOUNT: &str = "accrued-incentives";
/// The cost centre when nothing is configured: none (an empty column).
pub const DEFAULT_COST_CENTRE: &str = "";

/// The accounts one journal row posts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalAccounts {
    /// Debited by a positive accrual (the incentive expense).
    pub debit_account: String,
    /// Credited by a positive accrual (the accrued liability).
    pub credit_account: String,
    pub cost_centre: String,
}

/// The validated `[journal]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalSettings {
    /// `[journal]` itself, over the defaults.
    pub default: JournalAccounts,
    /// `[journal.program.<id>]`, over `default`, by program ID.
    pub programs: BTreeMap<String, JournalAccounts>,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            default: JournalAccounts {
                debit_account: DEFAULT_DEBIT_ACCOUNT.into(),
                credit_account: DEFAULT_CREDIT_ACCOUNT.into(),
                cost_centre: DEFAULT_COST_CENTRE.into(),
            },
            programs: BTreeMap::new(),
        }
    }
}

impl JournalSettings {
    /// The accounts of program `program_id`.
    pub fn accounts(&self, program_id: &str) -> &JournalAccounts {
        self.programs.get(program_id).unwrap_or(&self.default)
    }
}

/// An account or cost centre: trimmed, no control characters, at most 64
/// characters; an account must not be empty.
fn value(key: &str, v: Option<String>, or: &str, required: bool) -> Result<String, RulesError> {
    let Some(v) = v else {
        return Ok(or.to_string());
    };
    let t = v.trim();
    if required && t.is_empty() {
        return Err(invalid(key.into(), "must not be empty"));
    }
    if t.chars().any(char::is_control) || t.chars().count() > 64 {
        return Err(invalid(
            key.into(),
            format!("'{v}' must be at most 64 characters, without control characters"),
        ));
    }
    Ok(t.to_string())
}

fn accounts(
    prefix: &str,
    raw: RawJournalAccounts,
    over: &JournalAccounts,
) -> Result<JournalAccounts, RulesError> {
    let k = |name: &str| format!("{prefix}.{name}");
    Ok(JournalAccounts {
        debit_account: value(
            &k("debit_account"),
            raw.debit_account,
            &over.debit_account,
            true,
        )?,
        credit_account: value(
            &k("credit_account"),
            raw.credit_account,
            &over.credit_account,
            true,
        )?,
        cost_centre: value(&k("cost_centre"), raw.cost_centre, &over.cost_centre, false)?,
    })
}

/// Validates `[journal]` against the programs of the rules.
pub fn journal_settings(
    raw: Option<RawJournal>,
    programs: &[Program],
) -> Result<JournalSettings, RulesError> {
    let mut s = JournalSettings::default();
    let Some(raw) = raw else {
        return Ok(s);
    };
    s.default = accounts(
        "journal",
        RawJournalAccounts {
            debit_account: raw.debit_account,
            credit_account: raw.credit_account,
            cost_centre: raw.cost_centre,
        },
        &s.default,
    )?;
    for (id, r) in raw.program {
        let prefix = format!("journal.program.{id}");
        if !programs.iter().any(|p| p.id == id) {
            return Err(invalid(prefix, "no [[program]] has this id"));
        }
        let a = accounts(&prefix, r, &s.default)?;
        s.programs.insert(id, a);
    }
    if s.default.debit_account == s.default.credit_account
        || s.programs
            .values()
            .any(|a| a.debit_account == a.credit_account)
    {
        return Err(invalid(
            "journal".into(),
            "debit_account and credit_account must differ (the entry would post to one account)",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use crate::config::parse_rules;

    const PROGRAM: &str = "[[program]]\nid = \"por\"\nassociations = [\"DPOR\"]\nrate = \"0.04\"\n";

    #[test]
    fn defaults_without_a_journal_table() {
        let r = parse_rules(PROGRAM).unwrap();
        let a = r.journal.accounts("por");
        assert_eq!(a.debit_account, super::DEFAULT_DEBIT_ACCOUNT);
        assert_eq!(a.credit_account, super::DEFAULT_CREDIT_ACCOUNT);
        assert_eq!(a.cost_centre, "");
    }

    #[test]
    fn a_journal_table_and_a_program_override() {
        let r = parse_rules(&format!(
            "{PROGRAM}[journal]\ndebit_account = \"6400\"\ncredit_account = \"2150\"\ncost_centre = \"CC-10\"\n\
             [journal.program.por]\ncredit_account = \"2160\"\n"
        ))
        .unwrap();
        let a = r.journal.accounts("por");
        assert_eq!(
            (&*a.debit_account, &*a.credit_account, &*a.cost_centre),
            ("6400", "2160", "CC-10")
        );
        assert_eq!(r.journal.accounts("other").credit_account, "2150");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse_rules(&format!("{PROGRAM}[journal]\ndebit_acount = \"1\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("debit_acount"), "{e}");
        let e = parse_rules(&format!(
            "{PROGRAM}[journal.program.por]\ncostcentre = \"1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("costcentre"), "{e}");
        let e = parse_rules(&format!(
            "{PROGRAM}[journal.program.nope]\ncost_centre = \"1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("journal.program.nope:"), "{e}");
        let e = parse_rules(&format!("{PROGRAM}[journal]\ndebit_account = \" \"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("journal.debit_account:"), "{e}");
        let e = parse_rules(&format!(
            "{PROGRAM}[journal]\ndebit_account = \"1\"\ncredit_account = \"1\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("journal:"), "{e}");
    }
}
