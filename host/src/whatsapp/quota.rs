//! The monthly reply quota counts per calendar month (UTC), as Meta bills.

use std::time::{Duration, UNIX_EPOCH};

/// The calendar month (UTC) of a time, `YYYY-MM`.
pub fn month_of(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .take(7)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(1_796_155_673_000), "2026-12");
    }
}
