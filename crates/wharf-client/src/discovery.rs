//! Listings: tags, the catalog and referrers (paginated through `Link`),
//! referrers with the spec's tag-schema fallback for registries without the
//! API.

use http::header::{ACCEPT, LINK};
use http::{Method, StatusCode};
use reqwest::Url;
use serde::Deserialize;
use wharf_oci::{media_type, Descriptor, Digest, Reference, RepositoryName, Target};

use crate::auth::{pull_scope, read_limited, CATALOG_SCOPE};
use crate::client::{expect_status, Call, Client};
use crate::error::{Context, Error, ErrorKind, Result};

#[derive(Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The `rel="next"` target of a `Link` header, resolved against `current`.
fn next_link(current: &Url, headers: &http::HeaderMap) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| current.join(target).ok()).flatten()
        })
}

/// The tag under which registries without the referrers API keep the
/// referrers index of `subject`: `<alg>-<hex>`, the algorithm cut to 32
/// characters and the hex to 64 (so sha512 digests still make a valid tag).
pub fn referrers_tag(subject: &Digest) -> String {
    let alg = subject.algorithm().as_str();
    let hex = subject.hex();
    format!(
        "{}-{}",
        &alg[..alg.len().min(32)],
        &hex[..hex.len().min(64)]
    )
}

impl Client {
    /// Fetch `first` and every page after it; `items` takes a page's body.
    async fn paginate<T>(
        &self,
        host: &str,
        first: Url,
        scope: String,
        ctx: &Context,
        items: impl Fn(&[u8]) -> Option<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > self.config().max_pages {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    ctx,
                    format!(
                        "the listing has more than {} pages",
                        self.config().max_pages
                    ),
                ));
            }
            let call = Call::new(host, Method::GET, url.clone(), ctx).scope(scope.clone());
            let response = expect_status(self.execute(call).await?, &[StatusCode::OK], ctx).await?;
            next = next_link(&url, response.headers()).filter(|n| n != &url);
            let body = read_limited(response, ctx).await?;
            let page = items(&body).ok_or_else(|| {
                Error::new(ErrorKind::Protocol, ctx, "the listing is not valid JSON")
            })?;
            all.extend(page);
        }
        Ok(all)
    }

    /// Every tag of a repository, following pagination.
    pub async fn tags_list(&self, host: &str, repo: &RepositoryName) -> Result<Vec<String>> {
        self.tags_list_paged(host, repo, None).await
    }

    /// Like [`Client::tags_list`], asking for pages of `page_size` tags.
    pub async fn tags_list_paged(
        &self,
        host: &str,
        repo: &RepositoryName,
        page_size: Option<usize>,
    ) -> Result<Vec<String>> {
        let ctx = Context::new("list tags", host).repository(repo);
        let mut url = self.url(host, &format!("{repo}/tags/list"), &ctx)?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        self.paginate(host, url, pull_scope(repo.as_str()), &ctx, |b| {
            serde_json::from_slice::<TagsPage>(b)
                .ok()
                .map(|p| p.tags.unwrap_or_default())
        })
        .await
    }

    /// Every repository the registry lists (`/v2/_catalog`).
    pub async fn catalog(&self, host: &str, page_size: Option<usize>) -> Result<Vec<String>> {
        let ctx = Context::new("list repositories", host);
        let mut url = self.url(host, "_catalog", &ctx)?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        self.paginate(host, url, CATALOG_SCOPE.to_string(), &ctx, |b| {
            serde_json::from_slice::<CatalogPage>(b)
                .ok()
                .map(|p| p.repositories.unwrap_or_default())
        })
        .await
    }

    /// Manifests that refer to `subject` (signatures, SBOMs…), optionally
    /// only those of `artifact_type`. A registry without the referrers API
    /// (404) is asked for the `<alg>-<hex>` tag instead; no such tag means
    /// no referrers.
    pub async fn referrers(
        &self,
        host: &str,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let ctx = Context::new("list referrers", host)
            .repository(repo)
            .tag_or_digest(subject);
        let mut url = self.url(host, &format!("{repo}/referrers/{subject}"), &ctx)?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let call = Call::new(host, Method::GET, url.clone(), &ctx)
            .scope(pull_scope(repo.as_str()))
            .header(ACCEPT, media_type::OCI_INDEX);
        let response = self.execute(call).await?;
        let (manifests, filtered) = if response.status() == StatusCode::NOT_FOUND {
            (self.referrers_from_tag(host, repo, subject).await?, false)
        } else {
            let response = expect_status(response, &[StatusCode::OK], &ctx).await?;
            let filtered = response
                .headers()
                .get("oci-filters-applied")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
            let next = next_link(&url, response.headers()).filter(|n| n != &url);
            let body = read_limited(response, &ctx).await?;
            let mut manifests = parse_index(&body, &ctx)?;
            // Registries page long listings like tags (`Link: rel="next"`).
            if let Some(next) = next {
                let rest = self
                    .paginate(host, next, pull_scope(repo.as_str()), &ctx, |b| {
                        serde_json::from_slice::<Index>(b).ok().map(|i| i.manifests)
                    })
                    .await?;
                manifests.extend(rest);
            }
            (manifests, filtered)
        };
        Ok(match artifact_type {
            Some(t) if !filtered => manifests
                .into_iter()
                .filter(|d| d.artifact_type.as_deref() == Some(t))
                .collect(),
            _ => manifests,
        })
    }

    async fn referrers_from_tag(
        &self,
        host: &str,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Descriptor>> {
        let tag = referrers_tag(subject)
            .parse()
            .expect("<alg>-<hex> is a valid tag");
        let reference = Reference::new(host, repo.clone(), Target::Tag(tag));
        match self.get_manifest(&reference).await {
            Ok(m) => parse_index(
                &m.bytes,
                &Context::new("list referrers", host).repository(repo),
            ),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

fn parse_index(bytes: &[u8], ctx: &Context) -> Result<Vec<Descriptor>> {
    serde_json::from_slice::<Index>(bytes)
        .map(|i| i.manifests)
        .map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                ctx,
                format!("the referrers index is invalid: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn link_headers() {
        let cur = Url::parse("http://r/v2/a/tags/list?n=2").unwrap();
        let mut h = http::HeaderMap::new();
        assert_eq!(next_link(&cur, &h), None);
        h.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
        );
        assert_eq!(
            next_link(&cur, &h).unwrap().as_str(),
            "http://r/v2/a/tags/list?last=b&n=2"
        );
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<http://r/x>; rel="prev", <http://r/y>; rel=next"#),
        );
        assert_eq!(next_link(&cur, &h).unwrap().as_str(), "http://r/y");
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<http://r/x>; rel="prev""#),
        );
        assert_eq!(next_link(&cur, &h), None);
    }

    #[test]
    fn referrers_tag_schema() {
        let d = Digest::sha256_of(b"");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        assert!(referrers_tag(&d).parse::<wharf_oci::Tag>().is_ok());
        let long = Digest::of(wharf_oci::Algorithm::Sha512, b"");
        assert_eq!(
            referrers_tag(&long),
            format!("sha512-{}", &long.hex()[..64])
        );
        assert!(referrers_tag(&long).parse::<wharf_oci::Tag>().is_ok());
    }
}
