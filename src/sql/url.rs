//! Database URLs fit to show.

/// A URL without its password, for messages.
/// A database URL fit to show: the password of `user:password@` and the
/// value of every query parameter that can carry a credential (`password`,
/// `sslpassword`, `token`, `secret`, keys…) become `***`.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &head[..s + 3], &creds[..c], &head[at..]),
                None => head.to_string(),
            }
        }
        _ => head.to_string(),
    };
    if let Some(q) = query {
        let secret = |k: &str| {
            // Names are compared as the driver reads them (%-decoded).
            let k = percent_decode(k).to_ascii_lowercase();
            ["pass", "pwd", "secret", "token", "key", "auth", "cred"].iter().any(|w| k.contains(w))
        };
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if secret(k) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{out}?{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(
            super::redact("postgres://h/db?user=u&password=s3cret&sslmode=require&sslpassword=x"),
            "postgres://h/db?user=u&password=***&sslmode=require&sslpassword=***"
        );
        assert_eq!(super::redact("mysql://u:p@h/db?PWD=x&token=y"), "mysql://u:***@h/db?PWD=***&token=***");
        assert_eq!(super::redact("postgres://h/db?p%61ssword=x"), "postgres://h/db?p%61ssword=***");
    }
}
