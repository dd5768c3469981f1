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

/// The built-in client: hyper-util's pooled client, HTTPS through rustls with `jwks-rustls`.
pub(crate) fn default_client(
    connect_timeout: std::time::Duration,
) -> std::sync::Arc<dyn HttpClient> {
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    #[cfg(feature = "jwks-rustls")]
    {
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        std::sync::Arc::new(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(https))
    }
    #[cfg(not(feature = "jwks-rustls"))]
    {
        std::sync::Arc::new(Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(http))
    }
}
