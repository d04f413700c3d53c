//! The attainment and tier-decision types shared by the stages: built by
//! [`crate::attain`], carried by the fold (tier decisions) and printed on
//! statements ([`crate::statements::PartnerStatement`]). Plain data, so that
//! `fold`, `statements` and `attain` depend on this module and not on each
//! other.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::dates::Month;

/// Where a row's paid available units come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PauSource {
    /// `PaidAvailableUnits` of the CPOR usage report.
    Report,
    /// Sum of billed `Quantity` of products mapped to the workload.
    Billing,
}

impl PauSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            PauSource::Report => "usage-report",
            PauSource::Billing => "billing",
        }
    }
}

/// One tenant, workload and month.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attainment {
    pub customer_id: String,
    pub workload: String,
    pub workload_name: String,
    pub month: Month,
    pub date: NaiveDate,
    pub mau: Decimal,
    pub pau: Decimal,
    pub pau_source: PauSource,
    /// `MAU / PAU`, exact; `None` when PAU is 0 (not computable).
    pub attainment: Option<Decimal>,
    /// The highest of the rules' `[usage] targets` reached.
    pub target_reached: Option<Decimal>,
    /// Highest MAU of the months before this one (0 when none).
    pub prior_hwm: Decimal,
    /// `max(0, min(MAU, PAU) - prior_hwm)`.
    pub compensable: Decimal,
    /// Provenance: usage file (as given) and line.
    pub source_file: String,
    pub line: u64,
}

/// How a tiered revenue rate was chosen (printed on statements).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TierNote {
    pub customer_id: String,
    pub program_id: String,
    pub product: String,
    pub month: Month,
    /// Every workload of the product and its attainment.
    pub workloads: Vec<(String, Option<Decimal>)>,
    /// The attainment that decided (the lowest); `None` = not computable.
    pub decisive: Option<Decimal>,
    pub rate: Decimal,
    pub explanation: String,
}

/// A tier decision's key: customer, program index, product, month.
pub type TierKey = (String, u32, String, Month);

/// The tier decisions made while accruing billing lines, one per key. Each
/// worker keeps its own; merging keeps the first of a key, and every decision
/// of a key is the same (it depends only on the key and the attainment
/// table), so the merged set does not depend on threads or chunking.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierNotes(pub BTreeMap<TierKey, TierNote>);

impl TierNotes {
    /// Adds `other`'s decisions (keys already present are kept).
    pub fn merge(&mut self, other: TierNotes) {
        for (k, v) in other.0 {
            self.0.entry(k).or_insert(v);
        }
    }

    /// The decisions, sorted by key.
    pub fn to_vec(&self) -> Vec<TierNote> {
        self.0.values().cloned().collect()
    }
}

/// An attainment row as shown to one partner.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttainmentLine {
    pub customer_id: String,
    pub customer_name: String,
    /// The partner's associations giving it this tenant-workload (`CPOR`, `DPOR+POR`).
    pub associations: String,
    pub row: Attainment,
}
