//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as far as an
//! anonymous pull needs them: the scheme, and for Bearer the realm and
//! service to ask for a token.

use http::header::{HeaderMap, WWW_AUTHENTICATE};

use crate::http::query_escape;

pub use wharf_client::challenge::{parse, Challenge};

/// The Docker token protocol: where to get a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
}

impl BearerChallenge {
    /// The anonymous token request containerd makes for `scope`.
    pub fn token_url(&self, scope: &str) -> String {
        let mut url = self.realm.clone();
        url.push(if url.contains('?') { '&' } else { '?' });
        if let Some(service) = &self.service {
            url.push_str(&format!("service={}&", query_escape(service)));
        }
        url.push_str(&format!("scope={}", query_escape(scope)));
        url
    }
}

/// Every challenge in every `WWW-Authenticate` header.
pub fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse)
        .collect()
}

/// The Bearer challenge with a realm, if the registry offers one.
pub fn bearer_challenge(headers: &HeaderMap) -> Option<BearerChallenge> {
    challenges(headers)
        .into_iter()
        .find(|c| c.scheme == "bearer")
        .and_then(|c| {
            Some(BearerChallenge {
                realm: c.param("realm")?.to_owned(),
                service: c.param("service").map(str::to_owned),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_style_challenges() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn parses_several_challenges_in_one_value() {
        let c = parse(r#"Basic realm="x, y", Bearer realm="https://t/token""#);
        let schemes: Vec<&str> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer"]);
        assert_eq!(c[0].param("realm"), Some("x, y"));
    }

    #[test]
    fn builds_the_token_url() {
        let b = BearerChallenge {
            realm: "https://auth/token".to_owned(),
            service: Some("reg".to_owned()),
        };
        assert_eq!(
            b.token_url("repository:a/b:pull"),
            "https://auth/token?service=reg&scope=repository%3Aa%2Fb%3Apull"
        );
    }
}
