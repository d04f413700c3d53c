//! The product-to-workload table (`[[product]]`) and workload names.
//!
//! A billing line's product stands for one or more Microsoft 365 workloads
//! (Exchange, Teams, ...): tiered revenue programs read their attainment, and
//! Graph usage exports take their paid seats from billed quantities.

use super::raw::RawProduct;
use super::{invalid, RulesError};

/// Known workloads: normalised spellings -> display name.
const WORKLOADS: [(&[&str], &str); 10] = [
    (&["exchange", "exchangeonline"], "Exchange"),
    (&["sharepoint", "sharepointonline"], "SharePoint"),
    (&["onedrive", "onedriveforbusiness"], "OneDrive"),
    (&["teams", "microsoftteams"], "Teams"),
    (&["yammer", "vivaengage"], "Yammer"),
    (
        &["skypeforbusiness", "skypeforbusinessonline", "skype"],
        "Skype For Business",
    ),
    (
        &["office365", "microsoft365", "m365apps", "office"],
        "Office 365",
    ),
    (&["intune", "microsoftintune"], "Intune"),
    (
        &["entraid", "azureactivedirectory", "azuread", "aad"],
        "Entra ID",
    ),
    (&["defender", "microsoftdefender"], "Defender"),
];

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// The comparison key of a workload name: `Exchange Online`, `exchange` and
/// `EXCHANGE` are the same workload. Unknown names compare by their letters
/// and digits, case-insensitively.
pub fn workload_key(name: &str) -> String {
    let s = squash(name);
    for (aliases, display) in WORKLOADS {
        if aliases.contains(&s.as_str()) {
            return squash(display);
        }
    }
    s
}

/// The display name of a workload (`exchange online` -> `Exchange`); unknown
/// names are kept as written (trimmed).
pub fn workload_display(name: &str) -> String {
    let s = squash(name);
    for (aliases, display) in WORKLOADS {
        if aliases.contains(&s.as_str()) {
            return display.to_string();
        }
    }
    name.trim().to_string()
}

/// One `[[product]]` row: a product (name, SKU name or ID) and its workloads.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductMap {
    /// As written; matched case-insensitively (whole value, trimmed).
    pub matches: String,
    /// Workload keys ([`workload_key`]).
    pub workloads: Vec<String>,
    /// Display names, same order.
    pub workload_names: Vec<String>,
}

impl ProductMap {
    pub fn hits(&self, value: &str) -> bool {
        !value.is_empty() && value.trim().eq_ignore_ascii_case(self.matches.trim())
    }
}

/// The first product row matching any of the values (in rules order).
pub fn product_for<'r>(products: &'r [ProductMap], values: &[&str]) -> Option<&'r ProductMap> {
    products.iter().find(|p| values.iter().any(|v| p.hits(v)))
}

/// Validates the `[[product]]` table.
pub fn products(raw: Vec<RawProduct>) -> Result<Vec<ProductMap>, RulesError> {
    let mut out: Vec<ProductMap> = Vec::new();
    for (j, p) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("product[{j}].{k}");
        if p.matches.trim().is_empty() {
            return Err(invalid(key("match"), "is empty"));
        }
        if out
            .iter()
            .any(|q| q.matches.eq_ignore_ascii_case(p.matches.trim()))
        {
            return Err(invalid(
                key("match"),
                format!("'{}' is listed twice", p.matches),
            ));
        }
        if p.workloads.is_empty() {
            return Err(invalid(key("workloads"), "must name at least one workload"));
        }
        let mut workloads = Vec::new();
        let mut names = Vec::new();
        for w in &p.workloads {
            let k = workload_key(w);
            if k.is_empty() {
                return Err(invalid(key("workloads"), "has an empty workload name"));
            }
            if !workloads.contains(&k) {
                workloads.push(k);
                names.push(workload_display(w));
            }
        }
        out.push(ProductMap {
            matches: p.matches.trim().to_string(),
            workloads,
            workload_names: names,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names() {
        assert_eq!(workload_key("Exchange Online"), workload_key("exchange"));
        assert_eq!(workload_key("Microsoft Teams"), "teams");
        assert_eq!(workload_display("skype for business"), "Skype For Business");
        assert_eq!(workload_display(" Power BI "), "Power BI");
        assert_eq!(workload_key("Power BI"), "powerbi");
    }
}
