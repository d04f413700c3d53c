//! `porledger history`: what the history holds, on stdout. Reads only.

use std::io::Write;

use crate::cli::HistoryArgs;
use crate::cmd::{stdout_result, Finish};
use crate::console::Lines;
use crate::error::Fatal;
use crate::history::History;

pub fn history(args: &HistoryArgs) -> Result<Finish, Fatal> {
    let Some(h) = History::open_read(&args.history)? else {
        return Err(Fatal::Input(format!(
            "{}: no such history (`porledger close` creates it)",
            args.history.display()
        )));
    };
    // The label `run` and `close` give the period (`2026-10..2026-10` is
    // `2026-10`).
    let period = args.period.map(|p| p.label());
    let text = render(&h, period.as_deref(), args.partner.as_deref())?;
    stdout_result(
        std::io::stdout()
            .lock()
            .write_all(crate::console::shown(&text).as_bytes()),
    )?;
    Ok(Finish::Clean)
}

/// The listing, as text, built a line at a time: names and IDs from the
/// history never break a line.
pub fn render(h: &History, period: Option<&str>, partner: Option<&str>) -> Result<String, Fatal> {
    let closes = h.closes(period)?;
    let mut s = Lines::new();
    writeln!(s, "history {}", h.path().display());
    if closes.is_empty() {
        writeln!(
            s,
            "no closed period{}",
            period.map(|p| format!(" {p}")).unwrap_or_default()
        );
        return Ok(s.into_string());
    }
    // Whether any close listed issued something to `partner`.
    let mut issued_to_partner = false;
    for c in &closes {
        let latest = h.latest(&c.period)? == Some(c.version);
        writeln!(s);
        writeln!(
            s,
            "{} version {}{}{}: {} accruals, {} partners, porledger {}, rounding {}, manifest sha256 {}",
            c.period,
            c.version,
            c.restates
                .map(|r| format!(" (restates version {r})"))
                .unwrap_or_default(),
            if latest { " [current]" } else { "" },
            c.accruals,
            c.partners,
            c.tool_version,
            c.rounding,
            c.manifest_sha256
        );
        // The partner as this close spells it: IDs are matched trimmed and
        // case-insensitively, as everywhere (`p-a` lists `P-A`).
        let spelled = match partner {
            None => None,
            Some(p) => {
                let wanted = crate::ingest::id_key(p.trim());
                let all = h.totals(&c.period, c.version, None)?;
                Some(
                    all.into_iter()
                        .find(|t| crate::ingest::id_matches(&wanted, &t.partner_id))
                        .map_or_else(|| p.to_string(), |t| t.partner_id),
                )
            }
        };
        let partner = spelled.as_deref();
        let totals = h.totals(&c.period, c.version, partner)?;
        issued_to_partner |= !totals.is_empty();
        if let (Some(p), true) = (partner, totals.is_empty()) {
            writeln!(s, "  (nothing issued to partner {p} in this version)");
        }
        for t in totals {
            writeln!(
                s,
                "  {:<20} {:<30} {} {}",
                t.partner_id, t.partner_name, t.currency, t.amount
            );
        }
        if partner.is_some() {
            for l in h.lines(&c.period, c.version, partner)? {
                writeln!(
                    s,
                    "    {} {} {} {} {} (basis {}, {} lines)",
                    l.customer_id,
                    l.program_id,
                    if l.accrual_month.is_empty() {
                        "-"
                    } else {
                        &l.accrual_month
                    },
                    l.currency,
                    l.amount,
                    l.basis,
                    l.lines
                );
            }
        }
    }
    if let (Some(p), false) = (partner, issued_to_partner) {
        writeln!(s);
        writeln!(
            s,
            "no partner {p} in {}: nothing was issued to it in the closes listed (check \
             the ID)",
            if period.is_some() {
                "these closes"
            } else {
                "the history"
            }
        );
    }
    Ok(s.into_string())
}
