//! The classifier's source as the caller sent it → the code that runs.
//! LLMs often answer with prose around a markdown fence: the first fenced
//! block is the code, and the prose is ignored.

/// The first fenced block's body, or the whole text if there is no fence.
pub fn extract(text: &str) -> String {
    let mut lines = text.lines();
    let mut body = Vec::new();
    let mut opened = false;
    for line in lines.by_ref() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            // The info string, if any, names the language: take any.
            let _ = rest;
            opened = true;
            break;
        }
    }
    if !opened {
        return text.to_string();
    }
    for line in lines {
        if line.trim_start().starts_with("```") {
            return join(body);
        }
        body.push(line);
    }
    // An unclosed fence: everything after it.
    join(body)
}

fn join(lines: Vec<&str>) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

/// Is `s` a valid Python identifier (ASCII subset) for `entrypoint`?
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    if s.len() > 128 {
        return false;
    }
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_code_is_kept() {
        let code = "def classify(df):\n    return ['a'] * len(df)\n";
        assert_eq!(extract(code), code);
    }

    #[test]
    fn first_fenced_block_wins() {
        let text = "Here is the classifier:\n\n```python\ndef classify(df):\n    return [1] * len(df)\n```\n\nAnd a test:\n```python\nprint(1)\n```\n";
        assert_eq!(extract(text), "def classify(df):\n    return [1] * len(df)\n");
    }

    #[test]
    fn bare_and_unclosed_fences() {
        assert_eq!(extract("```\nx = 1\n```"), "x = 1\n");
        assert_eq!(extract("intro\n```py\nx = 1\ny = 2"), "x = 1\ny = 2\n");
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("classify"));
        assert!(is_identifier("_f2"));
        assert!(!is_identifier("2f"));
        assert!(!is_identifier("os.system"));
        assert!(!is_identifier(""));
    }
}
