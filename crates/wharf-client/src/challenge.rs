//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1): one header may carry
//! several challenges, parameter values may be quoted strings holding commas
//! and escaped quotes (`scope="repository:a:pull,push"`).

/// One challenge: a scheme and its parameters (keys lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// How a registry wants to be authenticated, as far as this client cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChallenge {
    /// The Docker token protocol: fetch a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        /// Scopes the registry says the request needs (space-separated
        /// in the header), merged into the next token request.
        scopes: Vec<String>,
        /// `insufficient_scope`, `invalid_token`…
        error: Option<String>,
    },
    Basic,
}

impl AuthChallenge {
    /// The usable challenge among all `WWW-Authenticate` values: Bearer is
    /// preferred over Basic (a registry offering both accepts tokens).
    pub fn select<'a>(header_values: impl IntoIterator<Item = &'a str>) -> Option<AuthChallenge> {
        let all: Vec<Challenge> = header_values.into_iter().flat_map(parse).collect();
        let bearer = all.iter().find(|c| c.scheme == "bearer").and_then(|c| {
            Some(AuthChallenge::Bearer {
                realm: c.param("realm")?.to_string(),
                service: c.param("service").map(str::to_string),
                scopes: c
                    .param("scope")
                    .map(|s| {
                        s.split(' ')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                error: c.param("error").map(str::to_string),
            })
        });
        bearer.or_else(|| {
            all.iter()
                .any(|c| c.scheme == "basic")
                .then_some(AuthChallenge::Basic)
        })
    }

    pub fn scheme_name(&self) -> &'static str {
        match self {
            AuthChallenge::Bearer { .. } => "bearer",
            AuthChallenge::Basic => "basic",
        }
    }
}

/// A tiny cursor over the header value.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] == b' ' || self.s[self.i] == b'\t') {
            self.i += 1;
        }
    }

    fn skip_ws_and_commas(&mut self) {
        while self.i < self.s.len() && b" \t,".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn token(&mut self) -> &'a str {
        let start = self.i;
        while self.i < self.s.len() && is_tchar(self.s[self.i]) {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    /// A quoted string after its opening quote; `\x` stands for `x`.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A token68 or unquoted value: everything up to a comma or space.
    fn bare(&mut self) -> String {
        let start = self.i;
        while self.i < self.s.len() && !b" \t,".contains(&self.s[self.i]) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
}

/// Parse one header value into its challenges. Malformed trailing parts
/// are skipped rather than failing the whole header.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut c = Cursor {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        c.skip_ws_and_commas();
        if c.peek().is_none() {
            break;
        }
        let word = c.token();
        if word.is_empty() {
            // Not a token: skip one byte so a stray character cannot loop.
            c.i += 1;
            continue;
        }
        c.skip_ws();
        if c.peek() == Some(b'=') {
            // `key=value` belongs to the challenge being read.
            c.i += 1;
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.i += 1;
                c.quoted()
            } else {
                c.bare()
            };
            if let Some(last) = out.last_mut() {
                last.params.push((word.to_ascii_lowercase(), value));
            }
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_quoted_commas() {
        let v = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope""#;
        let c = parse(v);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:a/b:pull,push repository:c:pull")
        );
        assert_eq!(
            AuthChallenge::select([v]),
            Some(AuthChallenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scopes: vec![
                    "repository:a/b:pull,push".into(),
                    "repository:c:pull".into()
                ],
                error: Some("insufficient_scope".into()),
            })
        );
    }

    #[test]
    fn several_challenges_and_escapes() {
        let c =
            parse(r#"Basic realm="a \"quoted\" realm", Bearer realm=https://t/x, service = "s""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[1].param("realm"), Some("https://t/x"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn prefers_bearer_and_tolerates_garbage() {
        assert_eq!(
            AuthChallenge::select([r#"Basic realm="r""#, r#"Bearer realm="https://t""#])
                .unwrap()
                .scheme_name(),
            "bearer"
        );
        assert_eq!(
            AuthChallenge::select([r#"basic realm="Registry Realm""#]),
            Some(AuthChallenge::Basic)
        );
        // Bearer without a realm is unusable.
        assert_eq!(AuthChallenge::select(["Bearer service=x"]), None);
        assert_eq!(AuthChallenge::select(["", "=,,\"", "Negotiate"]), None);
    }
}
