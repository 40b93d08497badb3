//! Holding docs/ to the code: a test `include_str!`s a document and checks that it states the
//! numbers the code uses, phrase by phrase, so a changed constant fails until the document says
//! the same.

/// A document's text with every run of white space folded to one space (its sentences wrap
/// anywhere).
#[derive(Debug)]
pub struct Doc {
    name: &'static str,
    flat: String,
}

impl Doc {
    /// `text` is the document `name` (for messages, e.g. `"docs/architecture.md"`).
    pub fn new(name: &'static str, text: &str) -> Doc {
        Doc {
            name,
            flat: text.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// Whether the document says `phrase` (white space folded the same way).
    pub fn says(&self, phrase: &str) -> bool {
        self.flat
            .contains(&phrase.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Panics, naming the document and the phrase, unless the document says `phrase`.
    #[track_caller]
    pub fn assert_says(&self, phrase: &str) {
        assert!(
            self.says(phrase),
            "{} does not say {phrase:?}: update it to match the code",
            self.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Doc;

    #[test]
    fn phrases_match_across_line_breaks_and_only_whole() {
        let doc = Doc::new(
            "x.md",
            "The pool costs\n`orders_max × 96 B`;  the index\t8 B.",
        );
        assert!(doc.says("costs `orders_max × 96 B`; the index 8 B."));
        assert!(!doc.says("`orders_max × 16 B`"));
        doc.assert_says("the index 8 B");
        let refused = std::panic::catch_unwind(|| doc.assert_says("the index 16 B"));
        assert!(refused.is_err());
    }
}
