//! Every route of the API as data: a request line parses into an
//! [`Endpoint`] (or a precise error) without a server, so routing is unit
//! tested on its own. An endpoint is the operation a request asks for, its
//! method folded in; what each operation needs of the caller, which audit
//! event it writes and which metric counts it are read off [`Operation`], in
//! one place.

use http::Method;
use percent_encoding::percent_decode_str;
use strum::{EnumCount, EnumDiscriminants, EnumIter};
use wharf_auth::Action;
use wharf_oci::{Digest, RepositoryName, Target};

use crate::error::{Code, RegistryError};

/// What one request asks of the API. GET and HEAD of the read-only
/// endpoints are one operation (the server drops a HEAD answer's body);
/// manifests and blobs tell them apart, since a HEAD reads no content.
#[derive(Debug, Clone, PartialEq, Eq, EnumDiscriminants)]
#[strum_discriminants(name(Operation), derive(EnumIter, Hash))]
pub enum Endpoint {
    /// end-1: `GET /v2/`
    Base,
    /// `GET /v2/_catalog`
    Catalog,
    /// end-8: `GET /v2/<name>/tags/list`
    TagsList(RepositoryName),
    /// end-3: `GET /v2/<name>/manifests/<tag-or-digest>`
    ManifestGet(RepositoryName, Target),
    /// end-3: `HEAD /v2/<name>/manifests/<tag-or-digest>`
    ManifestHead(RepositoryName, Target),
    /// end-7: `PUT /v2/<name>/manifests/<tag-or-digest>`
    ManifestPut(RepositoryName, Target),
    /// end-9: `DELETE /v2/<name>/manifests/<tag-or-digest>`
    ManifestDelete(RepositoryName, Target),
    /// end-2: `GET /v2/<name>/blobs/<digest>`
    BlobGet(RepositoryName, Digest),
    /// end-2: `HEAD /v2/<name>/blobs/<digest>`
    BlobHead(RepositoryName, Digest),
    /// end-10: `DELETE /v2/<name>/blobs/<digest>`
    BlobDelete(RepositoryName, Digest),
    /// end-4a: `POST /v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// end-4b: `POST /v2/<name>/blobs/uploads/?digest=<digest>`, the blob as body
    UploadMonolithic(RepositoryName),
    /// end-11: `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<name>`
    BlobMount(RepositoryName),
    /// end-13: `GET /v2/<name>/blobs/uploads/<id>`
    UploadStatus(RepositoryName, String),
    /// end-5: `PATCH /v2/<name>/blobs/uploads/<id>`
    UploadPatch(RepositoryName, String),
    /// end-6: `PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>`
    UploadPut(RepositoryName, String),
    /// end-14: `DELETE /v2/<name>/blobs/uploads/<id>`
    UploadCancel(RepositoryName, String),
    /// end-12: `GET /v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, Digest),
    /// `GET /healthz`: the process serves requests.
    Health,
    /// `GET /readyz`: the storage answers.
    Ready,
    /// `GET /metrics`: counters in Prometheus text format.
    Metrics,
    /// `GET /auth/token`: a token for Basic credentials or none (token auth
    /// mode only).
    TokenGet,
    /// `POST /auth/token`: a token for an OAuth2 password-grant form.
    TokenPost,
}

/// The paths of the API, whatever the method: the `route` label of
/// `wharf_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, EnumCount)]
pub enum Route {
    Base,
    Catalog,
    Tags,
    Manifest,
    Blob,
    UploadStart,
    Upload,
    Referrers,
    Health,
    Ready,
    Metrics,
    Token,
}

/// The `route` label of a request whose path is no route of the API.
pub const INVALID_ROUTE_NAME: &str = "invalid";

impl Route {
    pub fn metric_name(self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags => "tags",
            Route::Manifest => "manifest",
            Route::Blob => "blob",
            Route::UploadStart => "upload_start",
            Route::Upload => "upload",
            Route::Referrers => "referrers",
            Route::Health => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::Token => "token",
        }
    }
}

/// What an operation needs from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, readiness, metrics and the token endpoint: anyone.
    Open,
    /// `/v2/`: an authenticated user. Clients learn the auth scheme from it,
    /// so it always challenges a client without credentials, or none of them
    /// would ever log in (anonymous pulls still work on the repositories).
    Authenticated,
    /// The catalog: anyone when anonymous clients may pull somewhere, else
    /// an authenticated user; it lists only what the caller may pull.
    Catalog,
    /// This action on the endpoint's repository.
    Repository(Action),
}

impl Operation {
    /// The route this operation is counted under.
    pub fn route(self) -> Route {
        use Operation as O;
        match self {
            O::Base => Route::Base,
            O::Catalog => Route::Catalog,
            O::TagsList => Route::Tags,
            O::ManifestGet | O::ManifestHead | O::ManifestPut | O::ManifestDelete => {
                Route::Manifest
            }
            O::BlobGet | O::BlobHead | O::BlobDelete => Route::Blob,
            O::UploadStart | O::UploadMonolithic | O::BlobMount => Route::UploadStart,
            O::UploadStatus | O::UploadPatch | O::UploadPut | O::UploadCancel => Route::Upload,
            O::Referrers => Route::Referrers,
            O::Health => Route::Health,
            O::Ready => Route::Ready,
            O::Metrics => Route::Metrics,
            O::TokenGet | O::TokenPost => Route::Token,
        }
    }

    /// The `route` label of `wharf_http_requests_total` for this operation.
    pub fn metric_name(self) -> &'static str {
        self.route().metric_name()
    }

    pub fn access(self) -> Access {
        use Operation as O;
        match self {
            O::Health | O::Ready | O::Metrics | O::TokenGet | O::TokenPost => Access::Open,
            O::Base => Access::Authenticated,
            O::Catalog => Access::Catalog,
            O::TagsList | O::Referrers | O::ManifestGet | O::ManifestHead => {
                Access::Repository(Action::Pull)
            }
            O::BlobGet | O::BlobHead => Access::Repository(Action::Pull),
            // Every upload step, its status and its cancellation are part of a push.
            O::ManifestPut
            | O::UploadStart
            | O::UploadMonolithic
            | O::BlobMount
            | O::UploadStatus
            | O::UploadPatch
            | O::UploadPut
            | O::UploadCancel => Access::Repository(Action::Push),
            O::ManifestDelete | O::BlobDelete => Access::Repository(Action::Delete),
        }
    }

    /// The `wharf::audit` action a request of this operation is logged
    /// under once its outcome is known: the writes that change what a
    /// repository holds. Reads and intermediate upload steps log none.
    pub fn audit_event(self) -> Option<&'static str> {
        use Operation as O;
        match self {
            O::ManifestPut => Some("push-manifest"),
            O::ManifestDelete => Some("delete-manifest"),
            O::BlobDelete => Some("delete-blob"),
            O::UploadPut | O::UploadMonolithic => Some("push-blob"),
            O::BlobMount => Some("mount"),
            O::Base
            | O::Catalog
            | O::TagsList
            | O::ManifestGet
            | O::ManifestHead
            | O::BlobGet
            | O::BlobHead
            | O::UploadStart
            | O::UploadStatus
            | O::UploadPatch
            | O::UploadCancel
            | O::Referrers
            | O::Health
            | O::Ready
            | O::Metrics
            | O::TokenGet
            | O::TokenPost => None,
        }
    }
}

impl Endpoint {
    pub fn operation(&self) -> Operation {
        self.into()
    }

    pub fn route(&self) -> Route {
        self.operation().route()
    }

    pub fn access(&self) -> Access {
        self.operation().access()
    }

    pub fn audit_event(&self) -> Option<&'static str> {
        self.operation().audit_event()
    }

    /// The repository the path names, if it names one.
    pub fn repository(&self) -> Option<&RepositoryName> {
        use Endpoint as E;
        match self {
            E::TagsList(r)
            | E::ManifestGet(r, _)
            | E::ManifestHead(r, _)
            | E::ManifestPut(r, _)
            | E::ManifestDelete(r, _)
            | E::BlobGet(r, _)
            | E::BlobHead(r, _)
            | E::BlobDelete(r, _)
            | E::UploadStart(r)
            | E::UploadMonolithic(r)
            | E::BlobMount(r)
            | E::UploadStatus(r, _)
            | E::UploadPatch(r, _)
            | E::UploadPut(r, _)
            | E::UploadCancel(r, _)
            | E::Referrers(r, _) => Some(r),
            E::Base
            | E::Catalog
            | E::Health
            | E::Ready
            | E::Metrics
            | E::TokenGet
            | E::TokenPost => None,
        }
    }

    /// The tag or digest the path names, for the audit log; empty if none.
    pub fn reference(&self) -> String {
        use Endpoint as E;
        match self {
            E::ManifestGet(_, t)
            | E::ManifestHead(_, t)
            | E::ManifestPut(_, t)
            | E::ManifestDelete(_, t) => target_label(t),
            E::BlobGet(_, d) | E::BlobHead(_, d) | E::BlobDelete(_, d) | E::Referrers(_, d) => {
                d.to_string()
            }
            _ => String::new(),
        }
    }
}

pub fn target_label(t: &Target) -> String {
    match t {
        Target::Tag(tag) => tag.as_str().to_string(),
        Target::Digest(d) => d.to_string(),
    }
}

/// A request no endpoint answers: the error to send and, when only the
/// method was wrong, the route its path named (it is counted there).
#[derive(Debug)]
pub struct Unrouted {
    pub route: Option<Route>,
    pub error: RegistryError,
}

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
            RegistryError::new(Code::ManifestUnknown, format!("{e}"))
        }
    })
}

/// Parse a request: its method, path (without query) and query. `ns` is
/// the `?ns=` value the server kept. The method also decides how an invalid
/// tag is reported.
pub fn parse(
    method: &Method,
    path: &str,
    query: &Query,
    ns: Option<&str>,
) -> Result<Endpoint, Unrouted> {
    let (route, endpoint) =
        parse_path(method, path, query, ns).map_err(|error| Unrouted { route: None, error })?;
    endpoint.ok_or_else(|| Unrouted {
        route: Some(route),
        error: RegistryError::new(
            Code::MethodNotAllowed,
            format!("{method} is not allowed on this endpoint"),
        ),
    })
}

/// The route a path names and its endpoint for `method` (`None`: the route
/// does not answer that method).
fn parse_path(
    method: &Method,
    path: &str,
    query: &Query,
    ns: Option<&str>,
) -> Result<(Route, Option<Endpoint>), RegistryError> {
    match path {
        "/healthz" => return Ok((Route::Health, read(method, Endpoint::Health))),
        "/readyz" => return Ok((Route::Ready, read(method, Endpoint::Ready))),
        "/metrics" => return Ok((Route::Metrics, read(method, Endpoint::Metrics))),
        "/auth/token" => return Ok((Route::Token, token(method))),
        _ => {}
    }
    let decoded = decode(path);
    let rest = match decoded.strip_prefix("/v2") {
        Some("") | Some("/") => return Ok((Route::Base, read(method, Endpoint::Base))),
        Some(rest) if rest.starts_with('/') => &rest[1..],
        _ => return Err(RegistryError::not_found()),
    };
    if rest == "_catalog" {
        return Ok((Route::Catalog, read(method, Endpoint::Catalog)));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    // Matched from the end: a repository may itself contain a component
    // named "blobs" or "manifests", the API's suffixes are fixed.
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        let repo = name(&segs[..n - 2], ns)?;
        return Ok((Route::Tags, read(method, Endpoint::TagsList(repo))));
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        let repo = name(&segs[..n - 2], ns)?;
        return Ok((Route::UploadStart, upload_start(method, repo, query)));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let repo = name(&segs[..n - 3], ns)?;
        return Ok(match segs[n - 1] {
            "" => (Route::UploadStart, upload_start(method, repo, query)),
            id => (Route::Upload, upload(method, repo, id.to_string())),
        });
    }
    if n >= 3 {
        let (kind, last) = (segs[n - 2], segs[n - 1]);
        let repo = || name(&segs[..n - 2], ns);
        match kind {
            "manifests" => {
                let endpoint = manifest(method, repo()?, target(last, method)?);
                return Ok((Route::Manifest, endpoint));
            }
            "blobs" => return Ok((Route::Blob, blob(method, repo()?, digest(last)?))),
            "referrers" => {
                let endpoint = read(method, Endpoint::Referrers(repo()?, digest(last)?));
                return Ok((Route::Referrers, endpoint));
            }
            _ => {}
        }
    }
    Err(RegistryError::not_found())
}

/// A read-only endpoint answers GET and HEAD.
fn read(method: &Method, endpoint: Endpoint) -> Option<Endpoint> {
    (method == Method::GET || method == Method::HEAD).then_some(endpoint)
}

fn token(method: &Method) -> Option<Endpoint> {
    match *method {
        Method::GET => Some(Endpoint::TokenGet),
        Method::POST => Some(Endpoint::TokenPost),
        _ => None,
    }
}

fn manifest(method: &Method, repo: RepositoryName, target: Target) -> Option<Endpoint> {
    Some(match *method {
        Method::GET => Endpoint::ManifestGet(repo, target),
        Method::HEAD => Endpoint::ManifestHead(repo, target),
        Method::PUT => Endpoint::ManifestPut(repo, target),
        Method::DELETE => Endpoint::ManifestDelete(repo, target),
        _ => return None,
    })
}

fn blob(method: &Method, repo: RepositoryName, digest: Digest) -> Option<Endpoint> {
    Some(match *method {
        Method::GET => Endpoint::BlobGet(repo, digest),
        Method::HEAD => Endpoint::BlobHead(repo, digest),
        Method::DELETE => Endpoint::BlobDelete(repo, digest),
        _ => return None,
    })
}

/// A POST to the uploads: a mount when it names one (the handler falls
/// back to an upload if the blob cannot be mounted), a whole blob when it
/// names its digest, else the start of an upload.
fn upload_start(method: &Method, repo: RepositoryName, query: &Query) -> Option<Endpoint> {
    if method != Method::POST {
        return None;
    }
    Some(if query.get("mount").is_some() {
        Endpoint::BlobMount(repo)
    } else if query.get("digest").is_some() {
        Endpoint::UploadMonolithic(repo)
    } else {
        Endpoint::UploadStart(repo)
    })
}

fn upload(method: &Method, repo: RepositoryName, id: String) -> Option<Endpoint> {
    Some(match *method {
        Method::GET => Endpoint::UploadStatus(repo, id),
        Method::PATCH => Endpoint::UploadPatch(repo, id),
        Method::PUT => Endpoint::UploadPut(repo, id),
        Method::DELETE => Endpoint::UploadCancel(repo, id),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(s: &str) -> RepositoryName {
        s.parse().unwrap()
    }

    fn tag(s: &str) -> Target {
        Target::Tag(s.parse().unwrap())
    }

    /// `method path?query`, without `?ns=`.
    fn at(method: Method, path_and_query: &str) -> Result<Endpoint, Unrouted> {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        parse(&method, path, &Query::parse(query), None)
    }

    #[test]
    fn parses_every_endpoint() {
        let d: Digest = D.parse().unwrap();
        let cases = [
            (Method::GET, "/v2/".to_string(), Endpoint::Base),
            (Method::HEAD, "/v2".to_string(), Endpoint::Base),
            (Method::GET, "/v2/_catalog".to_string(), Endpoint::Catalog),
            (
                Method::GET,
                "/v2/a/b/tags/list".to_string(),
                Endpoint::TagsList(repo("a/b")),
            ),
            (
                Method::GET,
                "/v2/a/manifests/v1".to_string(),
                Endpoint::ManifestGet(repo("a"), tag("v1")),
            ),
            (
                Method::HEAD,
                format!("/v2/a/manifests/{D}"),
                Endpoint::ManifestHead(repo("a"), Target::Digest(d.clone())),
            ),
            (
                Method::PUT,
                "/v2/a/manifests/v1".to_string(),
                Endpoint::ManifestPut(repo("a"), tag("v1")),
            ),
            (
                Method::DELETE,
                "/v2/a/manifests/v1".to_string(),
                Endpoint::ManifestDelete(repo("a"), tag("v1")),
            ),
            (
                Method::GET,
                format!("/v2/a/blobs/{D}"),
                Endpoint::BlobGet(repo("a"), d.clone()),
            ),
            (
                Method::HEAD,
                format!("/v2/a/blobs/{D}"),
                Endpoint::BlobHead(repo("a"), d.clone()),
            ),
            (
                Method::DELETE,
                format!("/v2/a/blobs/{D}"),
                Endpoint::BlobDelete(repo("a"), d.clone()),
            ),
            (
                Method::POST,
                "/v2/a/blobs/uploads/".to_string(),
                Endpoint::UploadStart(repo("a")),
            ),
            (
                Method::POST,
                "/v2/a/blobs/uploads".to_string(),
                Endpoint::UploadStart(repo("a")),
            ),
            (
                Method::POST,
                format!("/v2/a/blobs/uploads/?digest={D}"),
                Endpoint::UploadMonolithic(repo("a")),
            ),
            (
                Method::POST,
                format!("/v2/a/blobs/uploads/?mount={D}&from=b&digest={D}"),
                Endpoint::BlobMount(repo("a")),
            ),
            (
                Method::GET,
                "/v2/a/blobs/uploads/123".to_string(),
                Endpoint::UploadStatus(repo("a"), "123".into()),
            ),
            (
                Method::PATCH,
                "/v2/a/blobs/uploads/123".to_string(),
                Endpoint::UploadPatch(repo("a"), "123".into()),
            ),
            (
                Method::PUT,
                format!("/v2/a/blobs/uploads/123?digest={D}"),
                Endpoint::UploadPut(repo("a"), "123".into()),
            ),
            (
                Method::DELETE,
                "/v2/a/blobs/uploads/123".to_string(),
                Endpoint::UploadCancel(repo("a"), "123".into()),
            ),
            (
                Method::GET,
                format!("/v2/a/referrers/{D}"),
                Endpoint::Referrers(repo("a"), d),
            ),
            (Method::GET, "/healthz".to_string(), Endpoint::Health),
            (Method::HEAD, "/readyz".to_string(), Endpoint::Ready),
            (Method::GET, "/metrics".to_string(), Endpoint::Metrics),
            (Method::GET, "/auth/token".to_string(), Endpoint::TokenGet),
            (Method::POST, "/auth/token".to_string(), Endpoint::TokenPost),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                at(method.clone(), &path).unwrap(),
                expected,
                "{method} {path}"
            );
        }
    }

    /// One request of each operation: an exhaustive match, so a new
    /// operation cannot go without one.
    fn sample(op: Operation) -> (Method, String) {
        use Operation as O;
        let (method, path) = match op {
            O::Base => (Method::GET, "/v2/"),
            O::Catalog => (Method::GET, "/v2/_catalog"),
            O::TagsList => (Method::GET, "/v2/a/tags/list"),
            O::ManifestGet => (Method::GET, "/v2/a/manifests/v1"),
            O::ManifestHead => (Method::HEAD, "/v2/a/manifests/v1"),
            O::ManifestPut => (Method::PUT, "/v2/a/manifests/v1"),
            O::ManifestDelete => (Method::DELETE, "/v2/a/manifests/v1"),
            O::BlobGet => (Method::GET, "/v2/a/blobs/{D}"),
            O::BlobHead => (Method::HEAD, "/v2/a/blobs/{D}"),
            O::BlobDelete => (Method::DELETE, "/v2/a/blobs/{D}"),
            O::UploadStart => (Method::POST, "/v2/a/blobs/uploads/"),
            O::UploadMonolithic => (Method::POST, "/v2/a/blobs/uploads/?digest={D}"),
            O::BlobMount => (Method::POST, "/v2/a/blobs/uploads/?mount={D}&from=b"),
            O::UploadStatus => (Method::GET, "/v2/a/blobs/uploads/1"),
            O::UploadPatch => (Method::PATCH, "/v2/a/blobs/uploads/1"),
            O::UploadPut => (Method::PUT, "/v2/a/blobs/uploads/1?digest={D}"),
            O::UploadCancel => (Method::DELETE, "/v2/a/blobs/uploads/1"),
            O::Referrers => (Method::GET, "/v2/a/referrers/{D}"),
            O::Health => (Method::GET, "/healthz"),
            O::Ready => (Method::GET, "/readyz"),
            O::Metrics => (Method::GET, "/metrics"),
            O::TokenGet => (Method::GET, "/auth/token"),
            O::TokenPost => (Method::POST, "/auth/token"),
        };
        (method, path.replace("{D}", D))
    }

    #[test]
    fn every_operation_is_routed_and_classified() {
        let labels: Vec<&str> = Route::iter().map(Route::metric_name).collect();
        for op in Operation::iter() {
            let (method, path) = sample(op);
            let endpoint = at(method.clone(), &path).unwrap();
            assert_eq!(endpoint.operation(), op, "{method} {path}");
            assert!(labels.contains(&op.metric_name()), "{op:?}");
            // A repository action needs a repository to act on.
            let needs_repository = matches!(op.access(), Access::Repository(_));
            assert_eq!(
                endpoint.repository().is_some(),
                needs_repository,
                "{op:?}: access {:?}",
                op.access()
            );
            // An audit line names the repository it changed.
            if op.audit_event().is_some() {
                assert!(endpoint.repository().is_some(), "{op:?}");
            }
            // A method the route does not answer is counted on the route.
            let refused = at(Method::OPTIONS, &path).unwrap_err();
            assert_eq!(refused.error.code, Code::MethodNotAllowed, "OPTIONS {path}");
            assert_eq!(refused.route, Some(op.route()), "OPTIONS {path}");
        }
    }

    #[test]
    fn metric_names_are_distinct() {
        let mut labels: Vec<&str> = Route::iter().map(Route::metric_name).collect();
        labels.push(INVALID_ROUTE_NAME);
        let count = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), count, "{labels:?}");
    }

    fn access_name(access: Access) -> &'static str {
        match access {
            Access::Open => "open",
            Access::Authenticated => "user",
            Access::Catalog => "catalog",
            Access::Repository(action) => action.as_str(),
        }
    }

    /// ARCHITECTURE.md's table of operations, as `(operation, [cells])`.
    fn documented_operations() -> Vec<(String, Vec<String>)> {
        let doc = include_str!("../../../ARCHITECTURE.md");
        let header = "| operation | request | access | audit event | metric route |";
        let table = doc
            .split_once(header)
            .expect("ARCHITECTURE.md has the table of the registry's operations")
            .1;
        table
            .lines()
            .skip(2) // the rest of the header line and the separator
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<String> = line
                    .trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().trim_matches('`').to_string())
                    .collect();
                (cells[0].clone(), cells[1..].to_vec())
            })
            .collect()
    }

    #[test]
    fn the_documented_operations_are_the_routed_ones() {
        let documented = documented_operations();
        let names: Vec<&str> = documented.iter().map(|(op, _)| op.as_str()).collect();
        let routed: Vec<String> = Operation::iter().map(|op| format!("{op:?}")).collect();
        assert_eq!(
            names, routed,
            "ARCHITECTURE.md lists every operation once, in order"
        );
        for (op, (name, cells)) in Operation::iter().zip(&documented) {
            let audit = op.audit_event().unwrap_or("—");
            let expected = [access_name(op.access()), audit, op.metric_name()];
            assert_eq!(cells[1..], expected, "ARCHITECTURE.md's row for {name}");
            let (method, _) = sample(op);
            assert!(
                cells[0].starts_with(method.as_str()),
                "{name} is documented as {:?}, routed as {method}",
                cells[0]
            );
        }
    }

    #[test]
    fn the_documented_metric_routes_are_the_routed_ones() {
        let readme = include_str!("../../../README.md").replace('\n', " ");
        let sentence = readme
            .split_once("the `route` label is one of ")
            .expect("README.md lists the route labels of wharf_http_requests_total")
            .1
            .split_once('.')
            .expect("the list ends with a full stop")
            .0;
        let documented: Vec<&str> = sentence.split('`').skip(1).step_by(2).collect();
        let mut routed: Vec<&str> = Route::iter().map(Route::metric_name).collect();
        routed.push(INVALID_ROUTE_NAME);
        assert_eq!(documented, routed);
    }

    #[test]
    fn api_words_may_be_repository_components() {
        assert_eq!(
            at(Method::GET, "/v2/blobs/manifests/manifests/latest").unwrap(),
            Endpoint::ManifestGet(repo("blobs/manifests"), tag("latest"))
        );
    }

    #[test]
    fn ns_prefixes_the_repository() {
        let no_query = Query::default();
        assert_eq!(
            parse(
                &Method::GET,
                "/v2/library/alpine/manifests/3.21",
                &no_query,
                Some("docker.io")
            )
            .unwrap(),
            Endpoint::ManifestGet(repo("docker.io/library/alpine"), tag("3.21"))
        );
        assert_eq!(
            parse(
                &Method::GET,
                &format!("/v2/coredns/coredns/blobs/{D}"),
                &no_query,
                Some("registry.k8s.io")
            )
            .unwrap(),
            Endpoint::BlobGet(repo("registry.k8s.io/coredns/coredns"), D.parse().unwrap())
        );
        assert!(parse(&Method::GET, "/v2/a/tags/list", &no_query, Some("bad/host")).is_err());
    }

    #[test]
    fn percent_encoded_digests_are_decoded() {
        let enc = D.replace(':', "%3A");
        assert_eq!(
            at(Method::GET, &format!("/v2/a/blobs/{enc}")).unwrap(),
            Endpoint::BlobGet(repo("a"), D.parse().unwrap())
        );
    }

    #[test]
    fn rejects_bad_paths() {
        let code = |p: &str| at(Method::PUT, p).unwrap_err().error.code;
        assert_eq!(code("/v2/../etc/blobs/x"), Code::NameInvalid);
        assert_eq!(code("/v2/%2e%2e/x/manifests/a"), Code::NameInvalid);
        assert_eq!(code("/v2/UPPER/manifests/a"), Code::NameInvalid);
        assert_eq!(code("/v2/a/blobs/md5:abc"), Code::DigestInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:abc"), Code::DigestInvalid);
        assert_eq!(code("/v2/a/manifests/-bad"), Code::ManifestInvalid);
        assert_eq!(code("/v3/"), Code::NotFound);
        assert_eq!(code("/v2/a"), Code::NotFound);
        assert_eq!(code("/etc/passwd"), Code::NotFound);
        let get = at(Method::GET, "/v2/a/manifests/.bad").unwrap_err();
        assert_eq!(get.error.code, Code::ManifestUnknown);
        assert_eq!(get.route, None, "a path that does not parse has no route");
    }

    #[test]
    fn methods_a_route_does_not_answer_are_405_on_that_route() {
        let refused = at(Method::POST, "/v2/a/manifests/v1").unwrap_err();
        assert_eq!(refused.error.code, Code::MethodNotAllowed);
        assert_eq!(refused.route, Some(Route::Manifest));
        let refused = at(Method::PUT, "/auth/token").unwrap_err();
        assert_eq!(refused.route, Some(Route::Token));
        let refused = at(Method::GET, "/v2/a/blobs/uploads/").unwrap_err();
        assert_eq!(refused.route, Some(Route::UploadStart));
        let refused = at(Method::DELETE, "/v2/").unwrap_err();
        assert_eq!(refused.route, Some(Route::Base));
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
    }
}
