//! The `earnings` table of a program: which rows of Microsoft's earnings
//! export pay for it (used by `porledger tieout`), and when Microsoft pays it.
//!
//! ```toml
//! [[program]]
//! id = "reseller"
//! # ...
//! earnings_due_months = 1   # paid in the month after the transaction ...
//! earnings_due_day = 16     # ... by this day (Modern Work usage: the 16th)
//!
//! [[program.earnings]]
//! programName = "CSP Indirect Reseller"
//! lever = "*Core*"
//! ```
//!
//! A pattern is matched against the export's column of the same name, case
//! and surrounding blanks ignored; `*` stands for any text (also none). Every
//! pattern given in one `[[program.earnings]]` must match; the first program
//! (in file order) with a matching table gets the earning.

use serde::Deserialize;

use super::{invalid, RulesError};

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawEarnings {
    #[serde(default, rename = "programName")]
    pub program_name: Option<String>,
    #[serde(default)]
    pub lever: Option<String>,
    #[serde(default, rename = "engagementName")]
    pub engagement_name: Option<String>,
    #[serde(default, rename = "partnerAssociation")]
    pub partner_association: Option<String>,
}

/// One validated `[[program.earnings]]`: lower-cased glob patterns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarningsMatch {
    pub program_name: Option<String>,
    pub lever: Option<String>,
    pub engagement_name: Option<String>,
    pub partner_association: Option<String>,
}

/// The values of one earnings row the patterns look at.
#[derive(Clone, Copy, Debug)]
pub struct EarningsLabels<'a> {
    pub program_name: &'a str,
    pub lever: &'a str,
    pub engagement_name: &'a str,
    pub partner_association: &'a str,
}

impl EarningsMatch {
    pub fn matches(&self, e: &EarningsLabels<'_>) -> bool {
        let ok = |p: &Option<String>, v: &str| p.as_deref().is_none_or(|p| glob(p, v));
        ok(&self.program_name, e.program_name)
            && ok(&self.lever, e.lever)
            && ok(&self.engagement_name, e.engagement_name)
            && ok(&self.partner_association, e.partner_association)
    }
}

/// `pattern` (lower case, `*` = any text) against `value`, case-insensitively.
pub fn glob(pattern: &str, value: &str) -> bool {
    let v = value.trim().to_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return v == pattern;
    }
    let mut rest = v.as_str();
    let first = parts[0];
    let last = parts[parts.len() - 1];
    if !rest.starts_with(first) {
        return false;
    }
    rest = &rest[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Validates the `earnings` tables of program `key`.
pub fn earnings_matches(key: &str, raw: &[RawEarnings]) -> Result<Vec<EarningsMatch>, RulesError> {
    raw.iter()
        .enumerate()
        .map(|(j, r)| {
            let pat = |name: &str, p: &Option<String>| -> Result<Option<String>, RulesError> {
                match p {
                    None => Ok(None),
                    Some(s) if s.trim().is_empty() => Err(invalid(
                        format!("{key}.earnings[{j}].{name}"),
                        "empty pattern: leave the key out to match any value",
                    )),
                    Some(s) => Ok(Some(s.trim().to_lowercase())),
                }
            };
            let m = EarningsMatch {
                program_name: pat("programName", &r.program_name)?,
                lever: pat("lever", &r.lever)?,
                engagement_name: pat("engagementName", &r.engagement_name)?,
                partner_association: pat("partnerAssociation", &r.partner_association)?,
            };
            if m.program_name.is_none()
                && m.lever.is_none()
                && m.engagement_name.is_none()
                && m.partner_association.is_none()
            {
                return Err(invalid(
                    format!("{key}.earnings[{j}]"),
                    "no pattern: give at least one of programName, lever, engagementName, \
                     partnerAssociation",
                ));
            }
            Ok(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("csp indirect reseller", " CSP Indirect Reseller "));
        assert!(glob("*core*", "CSP Indirect Provider: Core"));
        assert!(glob("csp*", "CSP Direct"));
        assert!(glob("*", ""));
        assert!(!glob("*core", "core accelerator"));
        assert!(!glob("a*a", "a"));
        assert!(glob("a*b*c", "aXbYc"));
    }
}
