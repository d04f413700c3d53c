//! Flags turned into validated settings, once, before any work: the commands in
//! [`crate::cmd`] take these and never look at raw flags again. Every error
//! names the flag it is about (exit code 2, like any fatal error).

use std::path::PathBuf;

use crate::cli::{InputArgs, LedgerFormat, PdfArgs, RenderArgs, RunArgs, ValidateArgs};
use crate::dates::Period;
use crate::error::Fatal;
use crate::money::Currency;
use crate::pipeline::StreamSettings;

/// The most worker threads `--threads` accepts. The default (number of CPUs)
/// is capped to it as well.
pub const MAX_THREADS: usize = 256;

/// Chunks smaller than this are raised to it (`--chunk-bytes`).
pub const MIN_CHUNK_BYTES: usize = 4096;

/// The largest `--chunk-bytes`: up to `2 x threads + 2` chunks are in memory.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// `--threads`: the number of worker threads, 1..=[`MAX_THREADS`]; without the
/// flag, the number of CPUs (capped).
pub fn threads(flag: Option<usize>) -> Result<usize, Fatal> {
    match flag {
        Some(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        Some(n) => Err(Fatal::Input(format!(
            "--threads {n}: must be between 1 and {MAX_THREADS}"
        ))),
        None => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_THREADS)),
    }
}

/// `--chunk-bytes`: small values are raised to [`MIN_CHUNK_BYTES`]; values
/// above [`MAX_CHUNK_BYTES`] are an error.
pub fn chunk_size(bytes: usize) -> Result<usize, Fatal> {
    if bytes > MAX_CHUNK_BYTES {
        return Err(Fatal::Input(format!(
            "--chunk-bytes {bytes}: must be at most {MAX_CHUNK_BYTES}"
        )));
    }
    Ok(bytes.max(MIN_CHUNK_BYTES))
}

/// `--reporting-currency`: an ISO 4217 currency code.
pub fn reporting_currency(flag: Option<&str>) -> Result<Option<Currency>, Fatal> {
    flag.map(|c| {
        Currency::parse(c).ok_or_else(|| {
            Fatal::Input(format!(
                "--reporting-currency '{c}' is not an ISO 4217 currency code (three letters, like EUR or USD)"
            ))
        })
    })
    .transpose()
}

/// The input files of `run` and `validate`, and how to stream them.
#[derive(Clone, Debug)]
pub struct InputSettings {
    pub billing: Vec<PathBuf>,
    pub designations: PathBuf,
    pub rules: PathBuf,
    pub usage: Vec<PathBuf>,
    pub usage_tenant_map: Option<PathBuf>,
    /// `--allow-duplicate-inputs`: the same billing content under two names is
    /// counted twice instead of refused.
    pub allow_duplicate_inputs: bool,
    pub threads: usize,
    pub chunk_size: usize,
}

impl InputSettings {
    pub fn new(a: &InputArgs) -> Result<InputSettings, Fatal> {
        Ok(InputSettings {
            billing: a.billing.clone(),
            designations: a.designations.clone(),
            rules: a.rules.clone(),
            usage: a.usage.clone(),
            usage_tenant_map: a.usage_tenant_map.clone(),
            allow_duplicate_inputs: a.allow_duplicate_inputs,
            threads: threads(a.threads)?,
            chunk_size: chunk_size(a.chunk_bytes)?,
        })
    }

    /// The streaming stage's settings.
    pub fn stream(&self, period: Option<Period>, max_rejects: Option<u64>) -> StreamSettings {
        StreamSettings {
            threads: self.threads,
            chunk_size: self.chunk_size,
            period,
            max_rejects,
            outputs: true,
            spill: None,
        }
    }
}

/// `--fx` and `--reporting-currency`.
#[derive(Clone, Debug)]
pub struct FxSettings {
    pub path: PathBuf,
    /// `--reporting-currency`; without it the rules' `reporting_currency`.
    pub currency: Option<Currency>,
}

/// `porledger run`.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub period: Period,
    pub inputs: InputSettings,
    pub out: PathBuf,
    pub max_rejects: u64,
    pub quiet: bool,
    pub fx: Option<FxSettings>,
    /// `None` with `--no-pdf`.
    pub pdf: Option<PdfArgs>,
    pub parquet_ledger: bool,
    /// `--history`: read only.
    pub history: Option<PathBuf>,
    /// `--spill-after`: groups held in memory before a sorted run is written.
    pub spill_after: usize,
    /// `--batch-groups` (hidden): groups per batch of statements written at once.
    pub batch_groups: usize,
}

impl RunSettings {
    pub fn new(a: &RunArgs) -> Result<RunSettings, Fatal> {
        let parquet_ledger = a.ledger_format == LedgerFormat::Parquet;
        if parquet_ledger && !crate::render::parquet::AVAILABLE {
            return Err(crate::ingest::parquet::feature_missing(
                "--ledger-format parquet",
            ));
        }
        let currency = reporting_currency(a.reporting_currency.as_deref())?;
        Ok(RunSettings {
            period: a.period,
            inputs: InputSettings::new(&a.inputs)?,
            out: a.out.clone(),
            max_rejects: a.max_rejects,
            quiet: a.quiet,
            fx: a.fx.clone().map(|path| FxSettings { path, currency }),
            pdf: (!a.no_pdf).then(|| a.pdf.clone()),
            parquet_ledger,
            history: a.history.clone(),
            spill_after: a.spill_after,
            batch_groups: a.batch_groups.max(1),
        })
    }
}

/// `porledger validate`.
#[derive(Clone, Debug)]
pub struct ValidateSettings {
    pub period: Option<Period>,
    pub inputs: InputSettings,
    pub show: usize,
}

impl ValidateSettings {
    pub fn new(a: &ValidateArgs) -> Result<ValidateSettings, Fatal> {
        Ok(ValidateSettings {
            period: a.period,
            inputs: InputSettings::new(&a.inputs)?,
            show: a.show,
        })
    }
}

/// `porledger render`.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    pub out: PathBuf,
    pub pdf: PdfArgs,
    pub threads: usize,
    pub quiet: bool,
}

impl RenderSettings {
    pub fn new(a: &RenderArgs) -> Result<RenderSettings, Fatal> {
        Ok(RenderSettings {
            out: a.out.clone(),
            pdf: a.pdf.clone(),
            threads: threads(a.threads)?,
            quiet: a.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<usize, Fatal>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(n) => panic!("accepted: {n}"),
        }
    }

    #[test]
    fn threads_are_bounded() {
        assert_eq!(threads(Some(1)).unwrap(), 1);
        assert_eq!(threads(Some(MAX_THREADS)).unwrap(), MAX_THREADS);
        for bad in [0, MAX_THREADS + 1, 20_000, usize::MAX] {
            let m = message(threads(Some(bad)));
            assert!(m.contains("--threads"), "{m}");
            assert!(m.contains(&format!("1 and {MAX_THREADS}")), "{m}");
        }
        let n = threads(None).unwrap();
        assert!((1..=MAX_THREADS).contains(&n));
    }

    #[test]
    fn chunk_size_is_raised_then_bounded() {
        assert_eq!(chunk_size(0).unwrap(), MIN_CHUNK_BYTES);
        assert_eq!(chunk_size(100).unwrap(), MIN_CHUNK_BYTES);
        assert_eq!(chunk_size(8 << 20).unwrap(), 8 << 20);
        assert_eq!(chunk_size(MAX_CHUNK_BYTES).unwrap(), MAX_CHUNK_BYTES);
        let m = message(chunk_size(usize::MAX));
        assert!(m.contains("--chunk-bytes"), "{m}");
    }

    #[test]
    fn reporting_currency_names_the_flag() {
        assert_eq!(reporting_currency(None).unwrap(), None);
        assert!(reporting_currency(Some("EUR")).unwrap().is_some());
        let e = reporting_currency(Some("euro")).unwrap_err().to_string();
        assert!(e.contains("--reporting-currency 'euro'"), "{e}");
    }
}
