//! Every route of the API as data: a request line parses into an
//! [`Endpoint`] (or a precise error) without a server, so routing is unit
//! tested on its own.

use http::Method;
use percent_encoding::percent_decode_str;
use wharf_oci::{Digest, RepositoryName, Target};

use crate::error::RegistryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// end-1: `GET /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// end-8: `GET /v2/<name>/tags/list`
    TagsList(RepositoryName),
    /// end-3, end-7, end-9: `/v2/<name>/manifests/<tag-or-digest>`
    Manifest(RepositoryName, Target),
    /// end-2, end-10: `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, Digest),
    /// end-4, end-11: `POST /v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// end-5, end-6, end-13, end-14: `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, String),
    /// end-12: `GET /v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, Digest),
    /// `GET /healthz`: the process serves requests.
    Health,
    /// `GET /readyz`: the storage answers.
    Ready,
    /// `GET /metrics`: counters in Prometheus text format.
    Metrics,
    /// `GET|POST /auth/token`: the token endpoint (token auth mode only).
    Token,
}

impl Endpoint {
    /// Index into [`crate::metrics::ROUTES`].
    pub fn metrics_route(&self) -> usize {
        match self {
            Endpoint::Base => 0,
            Endpoint::Catalog => 1,
            Endpoint::TagsList(_) => 2,
            Endpoint::Manifest(..) => 3,
            Endpoint::Blob(..) => 4,
            Endpoint::UploadStart(_) => 5,
            Endpoint::Upload(..) => 6,
            Endpoint::Referrers(..) => 7,
            Endpoint::Health => 8,
            Endpoint::Ready => 9,
            Endpoint::Metrics => 10,
            Endpoint::Token => 11,
        }
    }
}

/// The metrics route of a request that did not parse.
pub const INVALID_ROUTE: usize = 12;

/// A parsed query string. Values are percent-decoded; `+` stays `+` (media
/// types contain it, and no value wharf reads can contain a space).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query(pairs)
    }

    /// An `application/x-www-form-urlencoded` body: a query whose `+` is a
    /// space (OAuth2 scopes are space-separated).
    pub fn parse_form(body: &[u8]) -> Query {
        let text = String::from_utf8_lossy(body).replace('+', "%20");
        Query::parse(Some(&text))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn name(segments: &[&str], ns: Option<&str>) -> Result<RepositoryName, RegistryError> {
    let joined = segments.join("/");
    let repo: RepositoryName = joined.parse().map_err(RegistryError::name_invalid)?;
    match ns {
        // containerd asks a mirror for `/v2/<path>?ns=<upstream host>`: serve
        // it from `<host>/<path>`, so one wharf mirrors any number of upstreams.
        Some(host) => {
            let host =
                wharf_oci::name::host_component(host).map_err(RegistryError::name_invalid)?;
            repo.prefixed(&host).map_err(RegistryError::name_invalid)
        }
        None => Ok(repo),
    }
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse().map_err(RegistryError::digest_invalid)
}

fn target(s: &str, method: &Method) -> Result<Target, RegistryError> {
    if s.contains(':') {
        return digest(s).map(Target::Digest);
    }
    s.parse().map(Target::Tag).map_err(|e| {
        // Pushing under an impossible tag is a bad push; asking for one is
        // asking for a manifest that cannot exist (end-3 answers 404).
        if method == Method::PUT {
            RegistryError::manifest_invalid(format!("{e}"))
        } else {
            RegistryError::new(crate::error::Code::ManifestUnknown, format!("{e}"))
        }
    })
}

/// Parse a request path (without query). `ns` is the `?ns=` value.
/// The method only decides how an invalid tag is reported.
pub fn parse(method: &Method, path: &str, ns: Option<&str>) -> Result<Endpoint, RegistryError> {
    match path {
        "/healthz" => return Ok(Endpoint::Health),
        "/readyz" => return Ok(Endpoint::Ready),
        "/metrics" => return Ok(Endpoint::Metrics),
        "/auth/token" => return Ok(Endpoint::Token),
        _ => {}
    }
    let decoded = decode(path);
    let rest = match decoded.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok(Endpoint::Base),
        Some(rest) if rest.starts_with('/') => &rest[1..],
        _ => return Err(RegistryError::not_found()),
    };
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    // Matched from the end: a repository may itself contain a component
    // named "blobs" or "manifests", the API's suffixes are fixed.
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Endpoint::TagsList(name(&segs[..n - 2], ns)?));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Ok(Endpoint::UploadStart(name(&segs[..n - 2], ns)?));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let repo = name(&segs[..n - 3], ns)?;
        return Ok(match segs[n - 1] {
            "" => Endpoint::UploadStart(repo),
            id => Endpoint::Upload(repo, id.to_string()),
        });
    }
    if n >= 3 {
        let (kind, last) = (segs[n - 2], segs[n - 1]);
        let repo = || name(&segs[..n - 2], ns);
        match kind {
            "manifests" => return Ok(Endpoint::Manifest(repo()?, target(last, method)?)),
            "blobs" => return Ok(Endpoint::Blob(repo()?, digest(last)?)),
            "referrers" => return Ok(Endpoint::Referrers(repo()?, digest(last)?)),
            _ => {}
        }
    }
    Err(RegistryError::not_found())
}

/// Methods each endpoint answers; anything else is 405.
pub fn allows(endpoint: &Endpoint, method: &Method) -> bool {
    let m = method;
    match endpoint {
        Endpoint::Base
        | Endpoint::Catalog
        | Endpoint::TagsList(_)
        | Endpoint::Referrers(..)
        | Endpoint::Health
        | Endpoint::Ready
        | Endpoint::Metrics => m == Method::GET || m == Method::HEAD,
        Endpoint::Token => m == Method::GET || m == Method::POST,
        Endpoint::Manifest(..) => {
            [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(m)
        }
        Endpoint::Blob(..) => [Method::GET, Method::HEAD, Method::DELETE].contains(m),
        Endpoint::UploadStart(_) => m == Method::POST,
        Endpoint::Upload(..) => {
            [Method::GET, Method::PATCH, Method::PUT, Method::DELETE].contains(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_endpoint() {
        assert_eq!(parse(&Method::GET, "/v2/", None).unwrap(), Endpoint::Base);
        assert_eq!(parse(&Method::GET, "/v2", None).unwrap(), Endpoint::Base);
        assert_eq!(
            parse(&Method::GET, "/v2/_catalog", None).unwrap(),
            Endpoint::Catalog
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/b/tags/list", None).unwrap(),
            Endpoint::TagsList(repo("a/b"))
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/manifests/v1", None).unwrap(),
            Endpoint::Manifest(repo("a"), Target::Tag("v1".parse().unwrap()))
        );
        assert_eq!(
            parse(&Method::GET, &format!("/v2/a/manifests/{D}"), None).unwrap(),
            Endpoint::Manifest(repo("a"), Target::Digest(D.parse().unwrap()))
        );
        assert_eq!(
            parse(&Method::GET, &format!("/v2/a/blobs/{D}"), None).unwrap(),
            Endpoint::Blob(repo("a"), D.parse().unwrap())
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/blobs/uploads/", None).unwrap(),
            Endpoint::UploadStart(repo("a"))
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/blobs/uploads", None).unwrap(),
            Endpoint::UploadStart(repo("a"))
        );
        assert_eq!(
            parse(&Method::GET, "/v2/a/blobs/uploads/123", None).unwrap(),
            Endpoint::Upload(repo("a"), "123".into())
        );
        assert_eq!(
            parse(&Method::GET, &format!("/v2/a/referrers/{D}"), None).unwrap(),
            Endpoint::Referrers(repo("a"), D.parse().unwrap())
        );
    }

    #[test]
    fn api_words_may_be_repository_components() {
        assert_eq!(
            parse(&Method::GET, "/v2/blobs/manifests/manifests/latest", None).unwrap(),
            Endpoint::Manifest(
                repo("blobs/manifests"),
                Target::Tag("latest".parse().unwrap())
            )
        );
    }

    #[test]
    fn ns_prefixes_the_repository() {
        assert_eq!(
            parse(
                &Method::GET,
                "/v2/library/alpine/manifests/3.21",
                Some("docker.io")
            )
            .unwrap(),
            Endpoint::Manifest(
                repo("docker.io/library/alpine"),
                Target::Tag("3.21".parse().unwrap())
            )
        );
        assert_eq!(
            parse(
                &Method::GET,
                &format!("/v2/coredns/coredns/blobs/{D}"),
                Some("registry.k8s.io")
            )
            .unwrap(),
            Endpoint::Blob(repo("registry.k8s.io/coredns/coredns"), D.parse().unwrap())
        );
        assert!(parse(&Method::GET, "/v2/a/tags/list", Some("bad/host")).is_err());
    }

    #[test]
    fn percent_encoded_digests_are_decoded() {
        let enc = D.replace(':', "%3A");
        assert_eq!(
            parse(&Method::GET, &format!("/v2/a/blobs/{enc}"), None).unwrap(),
            Endpoint::Blob(repo("a"), D.parse().unwrap())
        );
    }

    #[test]
    fn rejects_bad_paths() {
        use crate::error::Code;
        let code = |p: &str| parse(&Method::PUT, p, None).unwrap_err().code;
        assert_eq!(code("/v2/../etc/blobs/x"), Code::NameInvalid);
        assert_eq!(code("/v2/%2e%2e/x/manifests/a"), Code::NameInvalid);
        assert_eq!(code("/v2/UPPER/manifests/a"), Code::NameInvalid);
        assert_eq!(code("/v2/a/blobs/md5:abc"), Code::DigestInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:abc"), Code::DigestInvalid);
        assert_eq!(code("/v2/a/manifests/-bad"), Code::ManifestInvalid);
        assert_eq!(code("/v3/"), Code::NotFound);
        assert_eq!(code("/v2/a"), Code::NotFound);
        assert_eq!(code("/etc/passwd"), Code::NotFound);
        let get = parse(&Method::GET, "/v2/a/manifests/.bad", None).unwrap_err();
        assert_eq!(get.code, Code::ManifestUnknown);
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some(
            "tag=a&tag=b&artifactType=application%2Fvnd.x%2Bjson&n",
        ));
        assert_eq!(q.all("tag").collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(q.get("artifactType"), Some("application/vnd.x+json"));
        assert_eq!(q.get("n"), Some(""));
        assert_eq!(q.get("last"), None);
    }

    #[test]
    fn form_bodies_decode_plus_as_space() {
        let f = Query::parse_form(
            b"grant_type=password&scope=repository%3Aa%3Apull+repository:b:push&password=p%2Bq",
        );
        assert_eq!(f.get("scope"), Some("repository:a:pull repository:b:push"));
        assert_eq!(f.get("password"), Some("p+q"));
        assert_eq!(
            parse(&Method::POST, "/auth/token", None).unwrap(),
            Endpoint::Token
        );
        assert!(allows(&Endpoint::Token, &Method::POST));
        assert!(!allows(&Endpoint::Token, &Method::PUT));
    }
}
