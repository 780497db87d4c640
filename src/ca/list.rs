//! `pki list`: every certificate of the index with its state.

use time::OffsetDateTime;

use super::CaError;
use super::files::Layout;
use super::index::Index;
use crate::cli::PkiListArgs;

/// Prints one line per certificate: kind, identity, serial, expiry, days left, state, and
/// the serial it replaced, marked when the server renewed it.
pub fn list(args: &PkiListArgs) -> Result<(), CaError> {
    let layout = Layout::new(&args.dir);
    layout.require_existing()?;
    let index = Index::load(&layout)?;
    let now = OffsetDateTime::now_utc();
    say!(
        "{:<10} {:<24} {:<40} {:<10} {:>9}  STATE",
        "KIND",
        "IDENTITY",
        "SERIAL",
        "EXPIRES",
        "DAYS-LEFT"
    );
    for record in &index.certificates {
        let (expires, days_left) = match record.not_after {
            Some(not_after) => (
                not_after.date().to_string(),
                (not_after - now).whole_days().to_string(),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let identity = if record.identity.is_empty() {
            "-"
        } else {
            &record.identity
        };
        let origin = match (&record.supersedes, record.renewed) {
            (Some(serial), Some(_)) => format!("  renewed from {serial}"),
            (Some(serial), None) => format!("  replaces {serial}"),
            (None, _) => String::new(),
        };
        let line = format!(
            "{:<10} {:<24} {:<40} {:<10} {:>9}  {:<10}{origin}",
            record.kind.name(),
            identity,
            record.serial,
            expires,
            days_left,
            index.state(record, now).name()
        );
        say!("{}", line.trim_end());
    }
    Ok(())
}
