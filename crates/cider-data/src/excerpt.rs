//! Cutting long input text down before it is echoed in an error message, so that a bad value
//! of thousands of characters still gives one short line.

use std::borrow::Cow;

/// Characters of a long text kept by [`excerpt`].
pub const EXCERPT_CHARS: usize = 40;

/// `text` itself when it has at most [`EXCERPT_CHARS`] + 20 characters, else its first
/// [`EXCERPT_CHARS`] characters followed by `… (N characters)`.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= EXCERPT_CHARS + 20 {
        return Cow::Borrowed(text);
    }
    let head: String = text.chars().take(EXCERPT_CHARS).collect();
    Cow::Owned(format!("{head}… ({count} characters)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_and_counted() {
        assert_eq!(excerpt("0:1:0.1"), "0:1:0.1");
        let digits = "7".repeat(5000);
        assert_eq!(
            excerpt(&digits),
            format!("{}… (5000 characters)", "7".repeat(40))
        );
        let short = "é".repeat(60);
        assert_eq!(excerpt(&short), short);
        assert_eq!(
            excerpt(&"é".repeat(61)),
            format!("{}… (61 characters)", "é".repeat(40))
        );
    }
}
