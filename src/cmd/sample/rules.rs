//! `rules.toml` of the sample: the programs `por-core`, `pal` and `reseller`.

/// The rules written next to the generated data.
pub const RULES_TOML: &str = r#"# Incentive rules of the generated sample (porledger sample).
# Rates and shares are decimal strings: "0.04" is 4 %.
rounding = "half-up"

[[program]]
id = "por-core"
name = "Partner of Record core incentive"
associations = ["POR", "DPOR"]
basis = "billed-revenue"
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
description = "4 % of billed revenue of Microsoft products for 36 months from the designation."

[[program]]
id = "pal"
name = "Partner Admin Link incentive"
associations = ["PAL"]
basis = "billed-revenue"
rate = "0.015"
valid_from = "2021-01-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
description = "1.5 % of billed revenue, split between the PAL partners of a customer."

[[program]]
id = "reseller"
name = "Indirect reseller rebate"
associations = ["RESELLER"]
basis = "billed-revenue"
rate = "0.01"
valid_from = "2022-01-01"
exclude_qualifiers = ["Trial"]
description = "1 % of billed revenue to the reseller on the billing line (ResellerMpnId)."
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn rules_parse() {
        let rules = crate::config::parse_rules(super::RULES_TOML).unwrap();
        assert_eq!(rules.programs.len(), 3);
    }
}
