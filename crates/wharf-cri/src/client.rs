//! gRPC over containerd's unix socket, every call bounded by a timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::CriError;
use crate::proto;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";
const STATUS: &str = "/runtime.v1.RuntimeService/Status";
const PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";
const IMAGE_STATUS: &str = "/runtime.v1.ImageService/ImageStatus";
const PLUGINS: &str = "/containerd.services.introspection.v1.Introspection/Plugins";

/// A connection to a container runtime's socket.
#[derive(Clone)]
pub struct CriClient {
    channel: Channel,
    socket: PathBuf,
    timeout: Duration,
}

impl CriClient {
    /// Connect to `socket`. Nothing listening, no permission, and a peer that
    /// does not speak HTTP/2 each give their own error.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<CriClient, CriError> {
        // A plain connect first, so that "nothing there" is told apart from
        // "something there that is not gRPC".
        match tokio::time::timeout(timeout, UnixStream::connect(socket)).await {
            Err(_) => return Err(CriError::timeout(socket, "connect", timeout)),
            Ok(Err(e)) => return Err(CriError::unreachable(socket, &e)),
            Ok(Ok(_probe)) => {}
        }
        let path = socket.to_owned();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        });
        // The URI is required by the API and never dialled: the connector
        // above decides where bytes go. Calls are bounded by `unary`'s own
        // timeout, so that a slow call is always reported as a timeout.
        let endpoint = Endpoint::from_static("http://containerd.sock").connect_timeout(timeout);
        let channel = tokio::time::timeout(timeout, endpoint.connect_with_connector(connector))
            .await
            .map_err(|_| CriError::timeout(socket, "HTTP/2 handshake", timeout))?
            .map_err(|e| CriError::not_grpc(socket, &e))?;
        Ok(CriClient {
            channel,
            socket: socket.to_owned(),
            timeout,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn version(&self) -> Result<proto::VersionResponse, CriError> {
        let request = proto::VersionRequest {
            version: "v1".to_owned(),
        };
        self.unary(VERSION, request).await
    }

    /// `Status` with `verbose`: the runtime's conditions and its `info` map
    /// (containerd 1.x puts its loaded CRI config under `info["config"]`).
    pub async fn status(&self) -> Result<proto::StatusResponse, CriError> {
        self.unary(STATUS, proto::StatusRequest { verbose: true })
            .await
    }

    /// The plugins containerd loaded, with what each exports.
    pub async fn plugins(&self, filters: &[&str]) -> Result<Vec<proto::Plugin>, CriError> {
        let request = proto::PluginsRequest {
            filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        };
        let response: proto::PluginsResponse = self.unary(PLUGINS, request).await?;
        Ok(response.plugins)
    }

    /// The kubelet's pull. Returns the image's ID (its config digest).
    pub async fn pull_image(&self, image: &str) -> Result<String, CriError> {
        let request = proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
            }),
        };
        let response: proto::PullImageResponse = self.unary(PULL_IMAGE, request).await?;
        Ok(response.image_ref)
    }

    /// The image the runtime holds under `image`, if any.
    pub async fn image_status(&self, image: &str) -> Result<Option<proto::Image>, CriError> {
        let request = proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: image.to_owned(),
            }),
            verbose: false,
        };
        let response: proto::ImageStatusResponse = self.unary(IMAGE_STATUS, request).await?;
        Ok(response.image)
    }

    async fn unary<Req, Resp>(&self, method: &'static str, request: Req) -> Result<Resp, CriError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let call = async {
            let mut grpc = tonic::client::Grpc::new(self.channel.clone());
            grpc.ready()
                .await
                .map_err(|e| CriError::not_grpc(&self.socket, &e))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            let mut request = tonic::Request::new(request);
            // containerd's CRI keeps the kubelet's images in this namespace.
            request
                .metadata_mut()
                .insert("containerd-namespace", "k8s.io".parse().expect("ASCII"));
            grpc.unary(request, PathAndQuery::from_static(method), codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| CriError::from_status(&self.socket, method, status))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CriError::timeout(&self.socket, method, self.timeout))?
    }
}
