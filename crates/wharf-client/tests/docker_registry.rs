//! The client against Debian's `docker-registry` (CNCF distribution 2.8),
//! open, with htpasswd Basic auth, and with token auth from a test token
//! server. Credentials come explicitly, from auth files and from a
//! credential helper.

mod common;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use wharf_client::{Client, ClientConfig, Credential, CredentialSources, ErrorKind, MountOutcome};
use wharf_oci::{media_type, Digest, Reference, Target};
use wharf_testkit::image::{push, Artifact};
use wharf_testkit::pki::Ca;
use wharf_testkit::token::TOKEN_SERVICE;
use wharf_testkit::{pseudo_random, DockerAuth, DockerRegistry, TokenPolicy, TokenServer};

const USER: &str = "wharf";
const PASSWORD: &str = "s3cret:with:colons";

fn reference(host: &str, s: &str) -> Reference {
    format!("{host}/{s}").parse().unwrap()
}

fn client_with(credentials: CredentialSources) -> Client {
    Client::new(ClientConfig {
        credentials,
        ..quick_config()
    })
    .unwrap()
}

async fn htpasswd_registry() -> DockerRegistry {
    DockerRegistry::start(DockerAuth::Htpasswd {
        user: USER,
        password: PASSWORD,
    })
    .await
}

/// Push an image, pull it back by tag and digest, byte for byte.
async fn round_trip(client: &Client, host: &str, img: &Artifact, name: &str) {
    let r = repo(name);
    push(client, host, &r, Some("v1"), img).await;
    let m = client
        .get_manifest(&reference(host, &format!("{name}:v1")))
        .await
        .unwrap();
    assert_eq!(m.bytes.as_ref(), img.manifest.as_slice());
    assert_eq!(m.media_type, img.media_type);
    assert_eq!(m.digest, img.digest());
    let by_digest = reference(host, name).with_digest(img.digest());
    let info = client.head_manifest(&by_digest).await.unwrap();
    assert_eq!(
        (info.digest, info.size),
        (img.digest(), img.manifest.len() as u64)
    );
    let layer = collect(
        client
            .get_blob(host, &r, &img.layer().digest())
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(layer, img.layer().bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_registry_oci_and_docker_v2s2() {
    let reg = DockerRegistry::start(DockerAuth::None).await;
    let client = client();
    round_trip(&client, &reg.host, &oci_image(11), "open/oci").await;
    round_trip(&client, &reg.host, &docker_image(12), "open/docker").await;
    let outcome = client
        .mount_blob(
            &reg.host,
            &repo("open/copy"),
            Some(&repo("open/oci")),
            &oci_image(11).layer().digest(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, MountOutcome::Mounted));
    assert!(client
        .catalog(&reg.host, None)
        .await
        .unwrap()
        .contains(&"open/copy".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_to_distribution() {
    let reg = DockerRegistry::start(DockerAuth::None).await;
    let client = client();
    let r = repo("chunks/app");
    let blob = pseudo_random(13, 200_000);
    let digest = Digest::sha256_of(&blob);
    let session = client.start_upload(&reg.host, &r).await.unwrap();
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(blob.clone()))];
    client
        .upload_chunked(session, &digest, futures_util::stream::iter(chunks), 50_000)
        .await
        .unwrap();
    assert_eq!(
        collect(client.get_blob(&reg.host, &r, &digest).await.unwrap())
            .await
            .unwrap(),
        blob
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_fall_back_to_the_tag_schema() {
    let reg = DockerRegistry::start(DockerAuth::None).await;
    let client = client();
    let r = repo("refs/app");
    let img = oci_image(14);
    push(&client, &reg.host, &r, Some("v1"), &img).await;
    // distribution 2.8 has no referrers API: the index lives at a tag.
    let sig = oci_image(15);
    push(&client, &reg.host, &r, Some("sig"), &sig).await;
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":{},"artifactType":"application/vnd.example.sig"}}]}}"#,
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST,
        sig.digest(),
        sig.manifest.len()
    );
    let tag = wharf_client::referrers_tag(&img.digest());
    client
        .put_manifest(
            &reg.host,
            &r,
            &Target::Tag(tag.parse().unwrap()),
            Bytes::from(index),
            media_type::OCI_INDEX,
        )
        .await
        .unwrap();
    let found = client
        .referrers(&reg.host, &r, &img.digest(), None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].digest, sig.digest());
    let filtered = client
        .referrers(
            &reg.host,
            &r,
            &img.digest(),
            Some("application/vnd.example.sbom"),
        )
        .await
        .unwrap();
    assert!(
        filtered.is_empty(),
        "filtered on the client when the registry cannot"
    );
    let none = client
        .referrers(&reg.host, &r, &sig.digest(), None)
        .await
        .unwrap();
    assert!(none.is_empty(), "no tag means no referrers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_with_explicit_credentials() {
    let reg = htpasswd_registry().await;
    let anonymous = client();
    let ping = anonymous.ping(&reg.host).await.unwrap();
    assert_eq!(ping.auth_scheme, Some("basic"));
    let err = anonymous
        .get_manifest(&reference(&reg.host, "private/app:v1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");

    let client = client_with(
        CredentialSources::none().with_explicit(&reg.host, Credential::basic(USER, PASSWORD)),
    );
    round_trip(&client, &reg.host, &docker_image(21), "private/app").await;

    let wrong = client_with(
        CredentialSources::none().with_explicit(&reg.host, Credential::basic(USER, "nope")),
    );
    let err = wrong
        .tags_list(&reg.host, &repo("private/app"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(!err.to_string().contains("nope") && !format!("{err:?}").contains("nope"));
}

/// A Docker `config.json` with an `auth` entry, behind an `auth.json`
/// that knows another host only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_auth_files() {
    let reg = htpasswd_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let auth_json = dir.path().join("auth.json");
    std::fs::write(&auth_json, r#"{"auths":{"other.example":{"auth":"eDp5"}}}"#).unwrap();
    let docker_config = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        &docker_config,
        format!(
            r#"{{"auths":{{"http://{}/v1/":{{"auth":"{auth}"}}}}}}"#,
            reg.host
        ),
    )
    .unwrap();
    let sources = CredentialSources::none().with_files([
        dir.path().join("missing.json"),
        auth_json,
        docker_config,
    ]);
    let client = client_with(sources);
    let tags = client
        .tags_list(&reg.host, &repo("nothing/here"))
        .await
        .unwrap_err();
    assert_eq!(
        tags.kind(),
        ErrorKind::NotFound,
        "authenticated, so the answer is 404: {tags}"
    );
    round_trip(&client, &reg.host, &oci_image(22), "files/app").await;
}

/// `credHelpers` names a helper found on the given PATH; it is asked with
/// the server URL on stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_a_credential_helper() {
    let reg = htpasswd_registry().await;
    let dir = tempfile::tempdir().unwrap();
    let asked = dir.path().join("asked");
    let script = dir.path().join("docker-credential-wharftest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\ncat > {asked}\nif [ \"$(cat {asked})\" = \"{host}\" ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"{host}\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            asked = asked.display(),
            host = reg.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{}},"credHelpers":{{"{}":"wharftest"}},"credsStore":"absent"}}"#,
            reg.host
        ),
    )
    .unwrap();
    let mut path = OsString::from(dir.path());
    path.push(":/usr/bin:/bin");
    let client = client_with(
        CredentialSources::none()
            .with_files([config])
            .with_helper_path(path),
    );
    round_trip(&client, &reg.host, &oci_image(23), "helper/app").await;
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), reg.host);
}

async fn token_setup(policy: TokenPolicy) -> (TokenServer, DockerRegistry) {
    let tokens = TokenServer::start(policy).await;
    let reg = DockerRegistry::start(DockerAuth::token(&tokens)).await;
    (tokens, reg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_scopes_and_reuse() {
    let (tokens, reg) = token_setup(TokenPolicy {
        user: Some((USER, PASSWORD)),
        ..TokenPolicy::default()
    })
    .await;
    let client = client_with(
        CredentialSources::none().with_explicit(&reg.host, Credential::basic(USER, PASSWORD)),
    );
    assert_eq!(
        client.ping(&reg.host).await.unwrap().auth_scheme,
        Some("bearer")
    );
    let img = oci_image(31);
    let r = repo("tok/app");
    push(&client, &reg.host, &r, Some("v1"), &img).await;
    assert_eq!(
        tokens.requested_scopes(),
        vec![vec!["repository:tok/app:pull,push".to_string()]],
        "one token for the whole push"
    );
    let m = client
        .get_manifest(&reference(&reg.host, "tok/app:v1"))
        .await
        .unwrap();
    assert_eq!(m.bytes.as_ref(), img.manifest.as_slice());
    for d in [img.config().digest(), img.layer().digest()] {
        collect(client.get_blob(&reg.host, &r, &d).await.unwrap())
            .await
            .unwrap();
    }
    assert_eq!(
        tokens.requested_scopes()[1..],
        [vec!["repository:tok/app:pull".to_string()]],
        "one pull token reused for the manifest and both blobs"
    );
    let requests = tokens.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref().is_some()),
        "credentials sent to the realm"
    );
    assert!(requests
        .iter()
        .all(|r| r.query_values("service") == [TOKEN_SERVICE]));

    // A mount asks for pull on the source in the same token.
    let outcome = client
        .mount_blob(
            &reg.host,
            &repo("tok/copy"),
            Some(&r),
            &img.layer().digest(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, MountOutcome::Mounted));
    assert_eq!(
        tokens.requested_scopes().last().unwrap(),
        &vec![
            "repository:tok/app:pull".to_string(),
            "repository:tok/copy:pull,push".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_anonymous_and_refused_token_is_renewed_once() {
    let (tokens, reg) = token_setup(TokenPolicy {
        first_token_invalid: true,
        access_token_field: true,
        ..TokenPolicy::default()
    })
    .await;
    let client = client();
    let err = client
        .tags_list(&reg.host, &repo("anon/app"))
        .await
        .unwrap_err();
    // The first token is refused (401), a second is fetched, and with it the
    // registry answers what it really thinks: there is no such repository.
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let requests = tokens.requests();
    assert_eq!(requests.len(), 2, "exactly one renewal");
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref().is_none()),
        "anonymous tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_server_refusing_credentials_is_unauthorized() {
    let (_tokens, reg) = token_setup(TokenPolicy {
        user: Some((USER, PASSWORD)),
        ..TokenPolicy::default()
    })
    .await;
    let client = client_with(
        CredentialSources::none()
            .with_explicit(&reg.host, Credential::basic(USER, "wrong-password")),
    );
    let err = client
        .get_manifest(&reference(&reg.host, "tok/app:v1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    assert!(err.to_string().contains("token server refused"), "{err}");
    assert!(!err.to_string().contains("wrong-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_an_extra_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf-test-ca");
    let server = ca.issue(&["127.0.0.1"]);
    let reg = DockerRegistry::start_with(DockerAuth::None, Some((server.cert, server.key))).await;
    let https = |ca_files: Vec<std::path::PathBuf>| {
        Client::new(ClientConfig {
            https_hosts: vec![reg.host.clone()],
            ca_files,
            ..quick_config()
        })
        .unwrap()
    };
    let err = https(Vec::new()).ping(&reg.host).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    let trusted = https(vec![ca.cert.clone()]);
    assert_eq!(trusted.ping(&reg.host).await.unwrap().auth_scheme, None);
    round_trip(&trusted, &reg.host, &oci_image(41), "tls/app").await;

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let err = Client::new(ClientConfig {
        ca_files: vec![not_pem],
        ..ClientConfig::default()
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}
