use std::{future::Future, pin::Pin};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Limited};
use tower::ServiceExt as _;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`JwksSource`](super::JwksSource) fetches with: any tower HTTP client.
///
/// Implemented for every cloneable `Service<Request<Empty<Bytes>>>` with an `http` response,
/// such as `hyper_util::client::legacy::Client` with your own connector (a proxy, a custom CA).
pub trait HttpClient: Send + Sync + 'static {
    /// `GET uri`, reading at most `limit` bytes of the body.
    fn get(
        &self,
        uri: Uri,
        limit: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;
}

impl<S, B> HttpClient for S
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn get(
        &self,
        uri: Uri,
        limit: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>> {
        let client = self.clone();
        Box::pin(async move {
            let req = Request::get(uri)
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())?;
            let res = client.oneshot(req).await.map_err(Into::into)?;
            let (parts, body) = res.into_parts();
            let bytes = Limited::new(body, limit).collect().await?.to_bytes();
            Ok(Response::from_parts(parts, bytes))
        })
    }
}

/// The built-in connector: plain HTTP, and HTTPS through rustls with `jwks-rustls`.
#[cfg(feature = "jwks-rustls")]
pub(crate) type Connector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
#[cfg(not(feature = "jwks-rustls"))]
pub(crate) type Connector = hyper_util::client::legacy::connect::HttpConnector;

/// hyper-util's pooled client on the built-in connector, for request bodies of type `B`.
pub(crate) fn hyper_client<B>(
    connect_timeout: std::time::Duration,
) -> hyper_util::client::legacy::Client<Connector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    #[cfg(feature = "jwks-rustls")]
    let connector = {
        http.enforce_http(false);
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    };
    #[cfg(not(feature = "jwks-rustls"))]
    let connector = http;
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The built-in client of a [`JwksSource`](super::JwksSource).
pub(crate) fn default_client(
    connect_timeout: std::time::Duration,
) -> std::sync::Arc<dyn HttpClient> {
    std::sync::Arc::new(hyper_client::<Empty<Bytes>>(connect_timeout))
}
