//! The web side of the listener: the dashboard's files (built from
//! `dashboard/` into `assets/` and embedded in the binary, so a server needs
//! no Node and no files on disk) and CORS for dashboards served elsewhere.
//!
//! Both are one tower layer in front of the gRPC and gRPC-Web services:
//! a `GET` or `HEAD` of a dashboard path is answered here, every other
//! request (gRPC is always `POST`) goes on unchanged, so other `GET`
//! endpoints mounted behind this layer keep working.

mod assets;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use assets::{Asset, find_asset};

/// Why the web settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A `--cors-allow-origin` value is not an origin.
    #[error(
        "--cors-allow-origin {origin:?} is not an origin: expected `*` or scheme://host[:port] with no path"
    )]
    BadOrigin {
        /// The offending value, cut to 100 characters.
        origin: String,
    },
}

/// The headers gRPC-Web clients send: Connect-ES, grpc-web, improbable-eng.
const ALLOWED_REQUEST_HEADERS: [&str; 11] = [
    "content-type",
    "authorization",
    "x-tributary-namespace",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "grpc-accept-encoding",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-accept-encoding",
    "connect-content-encoding",
];

/// What a browser script may read from a response: the gRPC status, which
/// gRPC-Web sends in headers when the call fails before any message.
const EXPOSED_RESPONSE_HEADERS: [&str; 3] =
    ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// Checks every origin and builds the CORS layer; `None` when no origin is
/// allowed, so that responses carry no CORS header at all.
pub fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, WebConfigError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| parse_origin(origin))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(ALLOWED_REQUEST_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_RESPONSE_HEADERS.map(HeaderName::from_static))
            .max_age(Duration::from_secs(24 * 60 * 60)),
    ))
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn parse_origin(origin: &str) -> Result<HeaderValue, WebConfigError> {
    let bad = || WebConfigError::BadOrigin {
        origin: origin.chars().take(100).collect(),
    };
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(bad());
    }
    HeaderValue::from_str(origin).map_err(|_| bad())
}

/// The layer in front of every service: CORS (when origins are allowed)
/// around the dashboard's files.
pub fn layer(
    cors: Option<CorsLayer>,
) -> tower::layer::util::Stack<
    DashboardLayer,
    tower::util::Either<CorsLayer, tower::layer::util::Identity>,
> {
    tower::layer::util::Stack::new(DashboardLayer, tower::util::option_layer(cors))
}

/// Answers `GET` and `HEAD` of the dashboard's paths; everything else goes
/// to the inner service.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardLayer;

impl<S> Layer<S> for DashboardLayer {
    type Service = Dashboard<S>;

    fn layer(&self, inner: S) -> Dashboard<S> {
        Dashboard { inner }
    }
}

/// See [`DashboardLayer`].
#[derive(Debug, Clone)]
pub struct Dashboard<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Any error a body can fail with.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one response body type of the layer: its own files and whatever the
/// services behind it answer.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Dashboard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if let Some(response) = answer(&request) {
            return Box::pin(std::future::ready(Ok(response)));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()))
        })
    }
}

/// The response to a dashboard request, or `None` for anything else.
fn answer<B>(request: &Request<B>) -> Option<Response<Body>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return None;
    }
    let asset = find_asset(request.uri().path())?;
    let not_modified = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag));
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, empty_body())
    } else if request.method() == Method::HEAD {
        (StatusCode::OK, empty_body())
    } else {
        let full = Full::new(Bytes::from_static(asset.bytes));
        (
            StatusCode::OK,
            full.map_err(|never| match never {}).boxed_unsync(),
        )
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if status == StatusCode::OK {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.bytes.len()));
    }
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    // The file names carry no hash, so browsers revalidate every time and get
    // a 304 while the binary is the same.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_named_when_wrong() {
        assert!(cors_layer(&[]).expect("no origins").is_none());
        assert!(cors_layer(&["*".to_owned()]).expect("any").is_some());
        assert!(
            cors_layer(&[
                "https://console.example.com".to_owned(),
                "http://localhost:5173".to_owned()
            ])
            .expect("two origins")
            .is_some()
        );
        for bad in [
            "console.example.com",
            "https://console.example.com/",
            "https://",
            "ftp://example.com",
        ] {
            let error = cors_layer(&[bad.to_owned()]).expect_err(bad).to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn dashboard_paths_are_answered_and_others_pass() {
        let get = |path: &str| {
            Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(())
                .expect("request")
        };
        let index = answer(&get("/")).expect("the index");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(
            index.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(answer(&get("/app.js")).is_some());
        assert!(answer(&get("/metrics")).is_none());
        assert!(answer(&get("/tributary.v1.RunService/GetRun")).is_none());
        let post = Request::builder()
            .method(Method::POST)
            .uri("/")
            .body(())
            .expect("request");
        assert!(answer(&post).is_none());
        let etag = index.headers()[header::ETAG].clone();
        let revalidate = Request::builder()
            .uri("/")
            .header(header::IF_NONE_MATCH, etag)
            .body(())
            .expect("request");
        assert_eq!(
            answer(&revalidate).expect("answered").status(),
            StatusCode::NOT_MODIFIED
        );
    }
}
