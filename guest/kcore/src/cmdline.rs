//! The kernel command line: space-separated `key=value` words (and bare `flag` words).

/// Iterates over the `(key, value)` pairs of a command line; a bare word has an empty value.
pub fn words(cmdline: &str) -> impl Iterator<Item = (&str, &str)> {
    cmdline.split_ascii_whitespace().map(|word| word.split_once('=').unwrap_or((word, "")))
}

/// The value of the last `key=value` word for `key`, as later words override earlier ones.
pub fn value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    words(cmdline).filter(|(k, _)| *k == key).map(|(_, v)| v).last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_and_lets_later_words_win() {
        let line = "  lde.test=panic quiet lde.hz=100 lde.test=triple-fault ";
        assert_eq!(value(line, "lde.test"), Some("triple-fault"));
        assert_eq!(value(line, "lde.hz"), Some("100"));
        assert_eq!(value(line, "quiet"), Some(""));
        assert_eq!(value(line, "missing"), None);
        assert_eq!(value("", "lde.test"), None);
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(value("a=b=c", "a"), Some("b=c"));
    }
}
