//! How results are printed: `-o table|json|yaml`, and the number formats the
//! tables share.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use crate::error::{Error, Result};

/// The `-o` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML, or calls `table` for the table form.
pub fn print<T: Serialize>(format: OutputFormat, value: &T, table: impl FnOnce() -> String) -> Result<()> {
    match format {
        OutputFormat::Table => println!("{}", table()),
        OutputFormat::Json => {
            let json =
                serde_json::to_string_pretty(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            println!("{json}");
        }
        OutputFormat::Yaml => {
            let yaml = serde_norway::to_string(value).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            print!("{yaml}");
        }
    }
    Ok(())
}

/// A listing like kubectl's: a header row, columns apart, no borders.
pub fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut table = Table::new();
    table.load_style(NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A table's text without the padding at the end of each line.
pub fn render(table: &Table) -> String {
    let lines: Vec<String> = table.lines().map(|line| line.trim_end().to_owned()).collect();
    lines.join("\n")
}

pub use scop_core::summary::{duration, millions, percent};

/// How long ago `then_ms` was, from `now_ms`: `45s`, `12m`, `3h`, `2d`.
pub fn age(then_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as a UTC date and time, `2026-12-01 08:57 UTC`.
pub fn utc(ms: i64) -> String {
    let (days, secs) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000) / 1000);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, (secs % 3600) / 60)
}

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(percent(0.9125), "91.25 %");
        assert_eq!(millions(272_474.0), "0.27 M");
        assert_eq!(duration(0.25), "0.2s");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(3700.0), "1h01m40s");
        assert_eq!(duration(f64::NAN), "?");
        assert_eq!(age(0, 45_000), "45s");
        assert_eq!(age(0, 3 * 3_600_000 + 5), "3h");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_764_579_420_000), "2025-12-01 08:57 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 19), "1.5 MiB");
    }
}
