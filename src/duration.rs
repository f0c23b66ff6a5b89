//! Durations as config and the command line write them: one or more `<number><unit>`, the
//! unit `ms`, `s`, `m`, `h` or `d` (`500ms`, `90s`, `15m`, `1h30m`, `2d`). One parser serves
//! every key (SLO targets, breaker windows, sink delays, ladder steps) and flag (`--window`);
//! each caller sets its own lower bound. No duration is longer than [`MAX_MS`] (366 days):
//! every one is added to or taken from a time somewhere, and a longer one is a typo, not a
//! policy (`99999999999d` would overflow the date arithmetic it feeds).

/// The longest duration accepted anywhere: 366 days.
pub const MAX_MS: i64 = 366 * 86_400_000;

/// What every "is not a duration" message says about the range.
pub const RANGE: &str = "at most 366d";

/// Milliseconds, or `None` for anything else: empty, a number without a unit, an unknown
/// unit, or a total past [`MAX_MS`].
pub fn parse_ms(s: &str) -> Option<i64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next()? {
                's' => (1_000, 1),
                'm' => (60_000, 1),
                'h' => (3_600_000, 1),
                'd' => (86_400_000, 1),
                _ => return None,
            }
        };
        rest = &rest[len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    (total <= MAX_MS).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn units_and_compounds_parse() {
        assert_eq!(parse_ms("500ms"), Some(500));
        assert_eq!(parse_ms("90s"), Some(90_000));
        assert_eq!(parse_ms("15m"), Some(900_000));
        assert_eq!(parse_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_ms("1m30s"), Some(90_000));
        assert_eq!(parse_ms(" 2d "), Some(172_800_000));
        assert_eq!(parse_ms("0s"), Some(0));
        assert_eq!(parse_ms("366d"), Some(super::MAX_MS));
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "15",
            "m",
            "1x",
            "1.5h",
            "-1s",
            "1h 30m",
            "99999999999999999999s",
            "9223372036854775807d",
            "1é",
            "99999999999d",
            "367d",
            "366d1ms",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad:?}");
        }
    }
}
