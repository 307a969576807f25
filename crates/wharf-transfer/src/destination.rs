//! Where a source image lands. By default the upstream host stays in the
//! path (`registry.k8s.io/coredns/coredns` → `<dst>/registry.k8s.io/coredns/coredns`),
//! which is what a containerd mirror asks for with `?ns=`; `flatten` drops it.

use wharf_oci::name::host_component;
use wharf_oci::{Reference, RepositoryName, Target};

use crate::error::{Result, TransferError};

/// How source references map to destination references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationMap {
    /// `host[:port]` of the destination registry.
    pub registry: String,
    /// Drop the source host from the path.
    pub flatten: bool,
}

impl DestinationMap {
    pub fn new(registry: &str, flatten: bool) -> DestinationMap {
        DestinationMap {
            registry: registry.trim_end_matches('/').to_string(),
            flatten,
        }
    }

    /// The destination repository of a source repository on `source_host`.
    pub fn repository(&self, source_host: &str, repo: &RepositoryName) -> Result<RepositoryName> {
        if self.flatten {
            return Ok(repo.clone());
        }
        let host =
            host_component(source_host).map_err(|e| TransferError::Invalid(e.to_string()))?;
        repo.prefixed(&host)
            .map_err(|e| TransferError::Invalid(format!("cannot prefix {repo} with {host}: {e}")))
    }

    /// The destination of `source`, with the same tag, or its digest when
    /// it has no tag (`name:tag@digest` keeps the tag: the copy is still
    /// pinned, the source is read by digest).
    pub fn map(&self, source: &Reference) -> Result<Reference> {
        let repo = self.repository(source.host(), source.repository())?;
        let target = source
            .tag()
            .map(|t| Target::Tag(t.clone()))
            .unwrap_or_else(|| source.target());
        Ok(Reference::new(&self.registry, repo, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn keeps_the_host_unless_flattened() {
        let map = DestinationMap::new("registry.home.arpa:5000", false);
        let dst = map
            .map(&reference("registry.k8s.io/coredns/coredns:v1.11.3"))
            .unwrap();
        assert_eq!(
            dst.to_string(),
            "registry.home.arpa:5000/registry.k8s.io/coredns/coredns:v1.11.3"
        );
        let dst = map.map(&reference("127.0.0.1:5001/library/a:v1")).unwrap();
        assert_eq!(
            dst.to_string(),
            "registry.home.arpa:5000/127.0.0.1_5001/library/a:v1"
        );
        let flat = DestinationMap::new("127.0.0.1:6000", true);
        let dst = flat.map(&reference("127.0.0.1:5001/library/a:v1")).unwrap();
        assert_eq!(dst.to_string(), "127.0.0.1:6000/library/a:v1");
        let pinned = format!("a/b:v1@{}", wharf_oci::Digest::sha256_of(b"x"));
        let dst = flat
            .map(&reference(&format!("127.0.0.1:5001/{pinned}")))
            .unwrap();
        assert_eq!(dst.to_string(), "127.0.0.1:6000/a/b:v1");
    }
}
