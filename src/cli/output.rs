//! Printing: aligned tables, JSON, sizes and ages. Everything goes
//! through [`outln!`], which returns a write error (a reader that went
//! away, as `strata images | head -1`) instead of panicking: `main` then
//! exits quietly.

use anyhow::Result;
use serde::Serialize;

/// `println!` to standard output that returns the `io::Result` of the
/// write instead of panicking on a closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// A table printed with columns padded to the widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        widths
    }

    fn print_row(cells: &[String], widths: &[usize]) -> std::io::Result<()> {
        let line: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        outln!("{}", line.join("   ").trim_end())
    }

    /// Prints header and rows.
    pub fn print(&self) -> std::io::Result<()> {
        let widths = self.widths();
        Self::print_row(&self.header, &widths)?;
        for row in &self.rows {
            Self::print_row(row, &widths)?;
        }
        Ok(())
    }

    /// Prints rows only (key/value listings).
    pub fn print_without_header(&self) -> std::io::Result<()> {
        let widths = self.widths();
        for row in &self.rows {
            Self::print_row(row, &widths)?;
        }
        Ok(())
    }
}

/// `1.5 GiB` style sizes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses `10G`, `512M`, `4096`, `1.5GiB` into bytes, for clap.
pub fn parse_size(text: &str) -> Result<u64, String> {
    strata_driver_api::parse_size(text)
        .ok_or_else(|| format!("{text:?} is not a size like 10G or 512M"))
}

/// `5 minutes ago` style ages from ns timestamps.
pub fn age(created_ns: u64) -> String {
    let secs = strata::now_ns().saturating_sub(created_ns) / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86_399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("10G"), Ok(10 << 30));
        assert_eq!(super::parse_size("512m"), Ok(512 << 20));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(super::parse_size("ten").is_err());
        assert!(super::parse_size("10X").is_err());
    }
}
