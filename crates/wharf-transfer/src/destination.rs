//! Where a source image lands. By default the upstream host stays in the
//! path (`registry.k8s.io/coredns/coredns` → `<dst>/registry.k8s.io/coredns/coredns`),
//! which is what a containerd mirror asks for with `?ns=`; `flatten` drops it.
//!
//! An image whose registry *is* the destination (`registry.home.arpa:5000/repo/x`
//! loaded into `registry.home.arpa:5000`, or into `10.0.0.5:5000` known also by
//! that name) lands at its plain path, `repo/x`: a node pulling the image's own
//! name directly, with no mirror and no `?ns=`, must find it there.

use std::collections::BTreeMap;

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
    /// Other names the destination registry is known by: `host:port`, or a
    /// bare host, which stands for that host at the destination's port (a
    /// certificate's names carry no port).
    pub names: Vec<String>,
}

impl DestinationMap {
    pub fn new(registry: &str, flatten: bool) -> DestinationMap {
        DestinationMap {
            registry: registry.trim_end_matches('/').to_string(),
            flatten,
            names: Vec::new(),
        }
    }

    /// The same map, also knowing the registry by `names`.
    pub fn with_names(mut self, names: impl IntoIterator<Item = String>) -> DestinationMap {
        for name in names {
            let name = name.trim().trim_end_matches('/').to_ascii_lowercase();
            if !name.is_empty() && !self.names.contains(&name) {
                self.names.push(name);
            }
        }
        self
    }

    /// Whether `host` (an image reference's registry) is the destination
    /// itself, under the name given or one of its other names.
    pub fn is_destination(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let registry = self.registry.to_ascii_lowercase();
        if host == registry {
            return true;
        }
        let port = port_of(&registry);
        self.names.iter().any(|name| {
            if port_of(name).is_some() {
                return *name == host;
            }
            match port {
                Some(port) => host == format!("{name}:{port}"),
                None => host == *name,
            }
        })
    }

    /// The destination repository of a source repository on `source_host`.
    pub fn repository(&self, source_host: &str, repo: &RepositoryName) -> Result<RepositoryName> {
        if self.flatten || self.is_destination(source_host) {
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

    /// What the plan says about `source` landing at its plain path, if it does.
    pub fn plain_path_note(&self, source: &Reference) -> Option<String> {
        (!self.flatten && self.is_destination(source.host())).then(|| {
            format!(
                "{} is the destination registry: stored at its own path {}, without a host prefix",
                source.host(),
                source.repository()
            )
        })
    }
}

/// The port of `host:port` (IPv6 literals in brackets included).
fn port_of(registry: &str) -> Option<&str> {
    let (host, port) = registry.rsplit_once(':')?;
    let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
    let plain = !host.contains(':');
    ((bracketed_v6 || plain) && port.chars().all(|c| c.is_ascii_digit())).then_some(port)
}

/// Two different images that would land under one destination name: the
/// first pair found, as an error that names both and what to do.
///
/// `images` are `(source, destination, content)`; `content` identifies what
/// the source holds when it is known (a bundle's manifest digest), so the
/// same image reached under two names is no collision.
pub fn check_collisions<'a>(
    images: impl IntoIterator<Item = (&'a Reference, &'a Reference, Option<&'a str>)>,
) -> Result<()> {
    let mut by_destination: BTreeMap<String, (&Reference, Option<&str>)> = BTreeMap::new();
    for (source, destination, content) in images {
        let key = destination.to_string();
        match by_destination.get(&key) {
            Some((first, first_content)) => {
                let same_image =
                    *first == source || (content.is_some() && *first_content == content);
                if !same_image {
                    return Err(TransferError::Invalid(format!(
                        "{first} and {source} would both be stored as {destination}; \
                         nothing was copied. Drop one of them, or the registry name \
                         that maps one onto the other"
                    )));
                }
            }
            None => {
                by_destination.insert(key, (source, content));
            }
        }
    }
    Ok(())
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

    #[test]
    fn an_image_of_the_destination_lands_at_its_plain_path() {
        let map = DestinationMap::new("registry.home.arpa:5000", false);
        let source = reference("registry.home.arpa:5000/repo/registry:v0.4.2");
        assert_eq!(
            map.map(&source).unwrap().to_string(),
            "registry.home.arpa:5000/repo/registry:v0.4.2"
        );
        assert!(map
            .plain_path_note(&source)
            .unwrap()
            .contains("repo/registry"));
        // Hosts are case-insensitive.
        let upper = reference("Registry.Home.Arpa:5000/repo/registry:v0.4.2");
        assert!(map.is_destination(upper.host()));
        // Another port is another registry.
        let other = reference("registry.home.arpa:5001/repo/registry:v0.4.2");
        assert_eq!(
            map.map(&other).unwrap().to_string(),
            "registry.home.arpa:5000/registry.home.arpa_5001/repo/registry:v0.4.2"
        );
        assert!(map.plain_path_note(&other).is_none());
    }

    #[test]
    fn other_names_of_the_destination_count_too() {
        let map = DestinationMap::new("127.0.0.1:5000", false).with_names([
            "registry.home.arpa".to_string(),
            "wharf.lan:443".to_string(),
        ]);
        // A bare name is the host at the destination's port.
        let named = reference("registry.home.arpa:5000/repo/x:v1");
        assert_eq!(
            map.map(&named).unwrap().to_string(),
            "127.0.0.1:5000/repo/x:v1"
        );
        let other_port = reference("registry.home.arpa:6000/repo/x:v1");
        assert_eq!(
            map.map(&other_port).unwrap().to_string(),
            "127.0.0.1:5000/registry.home.arpa_6000/repo/x:v1"
        );
        // A name with a port matches exactly that.
        assert!(map.is_destination("wharf.lan:443"));
        assert!(!map.is_destination("wharf.lan:5000"));
        // Without a port the destination is at the default port, and so are its names.
        let default_port =
            DestinationMap::new("registry.home.arpa", false).with_names(["mirror.lan".to_string()]);
        assert!(default_port.is_destination("mirror.lan"));
        assert!(!default_port.is_destination("mirror.lan:5000"));
    }

    #[test]
    fn two_images_onto_one_name_are_refused() {
        let map = DestinationMap::new("127.0.0.1:5000", false)
            .with_names(["a.lan".to_string(), "b.lan".to_string()]);
        let a = reference("a.lan:5000/repo/x:v1");
        let b = reference("b.lan:5000/repo/x:v1");
        let (da, db) = (map.map(&a).unwrap(), map.map(&b).unwrap());
        assert_eq!(da, db);
        let err = check_collisions([(&a, &da, None), (&b, &db, None)]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("a.lan:5000/repo/x:v1"), "{message}");
        assert!(message.contains("b.lan:5000/repo/x:v1"), "{message}");
        assert!(message.contains("127.0.0.1:5000/repo/x:v1"), "{message}");
        // The same content under two names is one image.
        let d = "sha256:abc";
        check_collisions([(&a, &da, Some(d)), (&b, &db, Some(d))]).unwrap();
        // Different content is not.
        assert!(check_collisions([(&a, &da, Some(d)), (&b, &db, Some("sha256:def"))]).is_err());
        // Distinct destinations never collide.
        let c = reference("c.lan:5000/repo/x:v1");
        let dc = map.map(&c).unwrap();
        check_collisions([(&a, &da, None), (&c, &dc, None)]).unwrap();
    }
}
