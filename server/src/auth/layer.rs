//! The tower layer that authenticates and authorizes every call before a
//! handler sees it: the key from `authorization: Bearer …`, the role against
//! [`super::access`], and the namespace bound to the key (the
//! `x-tributary-namespace` metadata a handler reads is the key's; a request
//! naming another is refused). Streams opened with a key end with
//! UNAUTHENTICATED the moment the key is revoked or expires.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};
use tributary_core::is_valid_identifier;
use tributary_proto::NAMESPACE_METADATA_KEY;

use super::access::{Rule, access_of, allows};
use super::{ALL_NAMESPACES, KeyRing, Principal};
use crate::api::ApiError;
use crate::clock::now_unix_ms;

/// Puts [`Authorize`] in front of the services.
#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<KeyRing>,
}

impl AuthLayer {
    pub fn new(keys: Arc<KeyRing>) -> AuthLayer {
        AuthLayer { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// The authorizing service; see the module documentation.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    keys: Arc<KeyRing>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for Authorize<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let access = access_of(request.uri().path());
        match authorize(&self.keys, &mut request, access.rule) {
            Err(error) => {
                let status = Status::from(error);
                Box::pin(async move { Ok(status.into_http()) })
            }
            Ok(Some(principal)) if access.streaming => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await?;
                    let ended = Box::pin(principal.ended());
                    Ok(response.map(|body| Body::new(EndsWithKey::new(body, ended))))
                })
            }
            Ok(_) => Box::pin(self.inner.call(request)),
        }
    }
}

/// Checks the call and binds its namespace; the principal when keys are on
/// and the call needs one.
fn authorize(
    keys: &KeyRing,
    request: &mut http::Request<Body>,
    rule: Rule,
) -> Result<Option<Principal>, ApiError> {
    if rule == Rule::Open || !keys.enabled() {
        return Ok(None);
    }
    let secret = bearer_secret(request.headers())?;
    let principal = keys.authenticate(secret, now_unix_ms())?;
    if !allows(rule, principal.role) {
        return Err(ApiError::PermissionDenied(format!(
            "a key of role {} may not call {}",
            principal.role,
            request.uri().path()
        )));
    }
    if principal.namespace != ALL_NAMESPACES {
        bind_namespace(request.headers_mut(), &principal.namespace)?;
    }
    request.extensions_mut().insert(principal.clone());
    Ok(Some(principal))
}

fn bearer_secret(headers: &http::HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let missing = || {
        ApiError::Unauthenticated(
            "this server requires an API key: send authorization: Bearer <key>".to_owned(),
        )
    };
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(ApiError::Unauthenticated(
            "more than one authorization header".to_owned(),
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::Unauthenticated("the authorization header is not ASCII text".to_owned())
    })?;
    let (scheme, secret) = text.split_once(' ').ok_or_else(|| {
        ApiError::Unauthenticated("the authorization header must be Bearer <key>".to_owned())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated(
            "the authorization header must be Bearer <key>".to_owned(),
        ));
    }
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(missing());
    }
    Ok(secret)
}

/// The request acts in the key's namespace: every namespace entry must name
/// it, and a request naming none gets it.
fn bind_namespace(headers: &mut http::HeaderMap, namespace: &str) -> Result<(), ApiError> {
    for value in headers.get_all(NAMESPACE_METADATA_KEY) {
        if value.as_bytes() != namespace.as_bytes() {
            let named = value
                .to_str()
                .ok()
                .filter(|text| is_valid_identifier(text))
                .map_or_else(
                    || "another namespace".to_owned(),
                    |text| format!("{text:?}"),
                );
            return Err(ApiError::PermissionDenied(format!(
                "this API key acts in namespace {namespace:?}; the request names {named}"
            )));
        }
    }
    if !headers.contains_key(NAMESPACE_METADATA_KEY) {
        let value = HeaderValue::from_str(namespace).map_err(|_| {
            ApiError::Store(crate::store::StoreError::Corrupt(
                "a stored key's namespace is not a header value".to_owned(),
            ))
        })?;
        headers.insert(NAMESPACE_METADATA_KEY, value);
    }
    Ok(())
}

/// A stream's response body that ends with UNAUTHENTICATED, in trailers, as
/// soon as `ended` completes (the key was revoked or expired). Dropping the
/// inner body drops the handler's stream, which stops a watch; the executor
/// stream's reader watches the key too and stops reading.
struct EndsWithKey {
    inner: Body,
    ended: Pin<Box<dyn Future<Output = &'static str> + Send>>,
    done: bool,
}

impl EndsWithKey {
    fn new(inner: Body, ended: Pin<Box<dyn Future<Output = &'static str> + Send>>) -> EndsWithKey {
        EndsWithKey {
            inner,
            ended,
            done: false,
        }
    }
}

impl http_body::Body for EndsWithKey {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(reason) = this.ended.as_mut().poll(cx) {
            this.done = true;
            this.inner = Body::empty();
            let mut trailers = http::HeaderMap::new();
            if let Err(status) = Status::unauthenticated(reason).add_header(&mut trailers) {
                return Poll::Ready(Some(Err(status)));
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.done = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
