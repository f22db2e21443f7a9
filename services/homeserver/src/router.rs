//! The axum router: every ruma endpoint registered under all its paths.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use http::{Method, StatusCode};
use ruma::api::{IncomingRequest, path_builder::PathBuilder};
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer, trace::TraceLayer};

use crate::{
    Error, Result, Services, api,
    ruma_wrapper::{Ruma, RumaResponse},
};

/// A rate-limit bucket: requests count per user (or per address before
/// login) in their bucket only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    /// The spec's rate-limited endpoints, and writes.
    Writes,
    /// Profiles, aliases, the room directory, the legacy media endpoints.
    Lookups,
    /// Reads that cost the node work (history, threads, relations, media,
    /// keys), with ten times the quota.
    Reads,
}

impl Bucket {
    pub fn name(self) -> &'static str {
        match self {
            Self::Writes => "writes",
            Self::Lookups => "lookups",
            Self::Reads => "reads",
        }
    }
}

/// What a route requires beyond the spec's metadata, read by the
/// [`Ruma`] extractor.
#[derive(Clone, Copy, Default)]
pub(crate) struct Guard {
    /// Rate-limited in this bucket, also where the spec does not say so.
    /// The spec's rate-limited endpoints count in [`Bucket::Writes`].
    pub rate_limit: Option<Bucket>,
    /// An access token is required even where the spec lets anyone ask.
    pub requires_token: bool,
}

impl Guard {
    /// Rate-limited as a write (sending events: a flood is a denial of
    /// service).
    pub const WRITE: Self = Self {
        rate_limit: Some(Bucket::Writes),
        requires_token: false,
    };
    /// A lookup anyone may make, within the lookups' rate limit.
    pub const LOOKUP: Self = Self {
        rate_limit: Some(Bucket::Lookups),
        requires_token: false,
    };
    /// For this node's users only and rate-limited as a lookup, where the
    /// spec lets anyone ask: what answers reveal who works here (profiles,
    /// the room directory) or what they share (the legacy media endpoints).
    pub const SIGNED_IN: Self = Self {
        rate_limit: Some(Bucket::Lookups),
        requires_token: true,
    };
    /// Rate-limited as a read.
    pub const READ: Self = Self {
        rate_limit: Some(Bucket::Reads),
        requires_token: false,
    };
}

/// Adds ruma endpoints to a router.
pub(crate) trait RumaRouter {
    fn ruma<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static;

    /// Like [`RumaRouter::ruma`], with what `guard` requires.
    fn ruma_guarded<T, F, Fut>(self, handler: F, guard: Guard) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static;

    /// An endpoint that answers with its own response type (e.g. raw JSON or bytes).
    fn ruma_raw<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static;

    /// [`RumaRouter::ruma_raw`] behind a guard.
    fn ruma_raw_guarded<T, F, Fut>(self, handler: F, guard: Guard) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static;
}

fn method_filter(method: &Method) -> MethodFilter {
    match *method {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::DELETE => MethodFilter::DELETE,
        Method::PATCH => MethodFilter::PATCH,
        _ => MethodFilter::OPTIONS,
    }
}

impl RumaRouter for Router<Arc<Services>> {
    fn ruma<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
    {
        self.ruma_raw::<T, _, _>(move |services, request| {
            let handler = handler.clone();
            async move {
                handler(services, request)
                    .await
                    .map(|r| RumaResponse(r).into_response())
            }
        })
    }

    fn ruma_guarded<T, F, Fut>(self, handler: F, guard: Guard) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
    {
        self.merge(Router::new().ruma(handler).layer(Extension(guard)))
    }

    fn ruma_raw_guarded<T, F, Fut>(self, handler: F, guard: Guard) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        self.merge(Router::new().ruma_raw(handler).layer(Extension(guard)))
    }

    fn ruma_raw<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Response>> + Send + 'static,
    {
        let mut router = self;
        for path in T::PATH_BUILDER.all_paths() {
            let mut paths = vec![path.to_owned()];
            // An empty state key leaves `.../state/{event_type}/` (or no
            // trailing slash at all); the extractor fills in the empty argument.
            if let Some(base) = path.strip_suffix("{state_key}") {
                paths.push(base.to_owned());
                paths.push(base.trim_end_matches('/').to_owned());
            }
            for path in paths {
                let handler = handler.clone();
                let route = on(
                    method_filter(&T::METHOD),
                    move |State(services): State<Arc<Services>>, request: Ruma<T>| {
                        let handler = handler.clone();
                        async move { handler(services, request).await.into_response() }
                    },
                );
                router = router.route(&path, route);
            }
        }
        router
    }
}

/// The complete client API router with its layers.
pub fn build(services: Arc<Services>) -> Router {
    served(api::client::routes(Router::new()), services)
        .layer(CorsLayer::permissive().max_age(Duration::from_secs(86400)))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &http::Request<axum::body::Body>| {
            // The path only: query strings can carry access tokens.
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
}

/// `routes` with what both APIs answer and wrap every request in: the
/// Matrix errors for an unknown path or method, no body limit of axum's
/// (each endpoint has its own), a panic as a 500, and the request timeout.
///
/// The layers wrap `routes` once, as the one route (the fallback) of an
/// outer router: `Router::layer` would wrap each of a few hundred routes
/// in a copy of every layer, to the same effect on a request.
fn served(routes: Router<Arc<Services>>, services: Arc<Services>) -> Router {
    let timeout = Duration::from_secs(services.config.request_timeout_secs);
    let routes = routes
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request.") })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed for this endpoint.",
            )
        })
        .with_state(services);
    Router::new()
        .fallback_service(routes)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_| {
            Error::internal("handler panicked").into_response()
        }))
        .layer(axum::middleware::from_fn(move |request, next| {
            within(timeout, request, next)
        }))
}

/// Answers a request that takes longer than `timeout` with an error, so
/// that a stuck handler does not hold its connection for ever.
async fn within(
    timeout: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Error::timed_out(format!(
            "The request took longer than {} s.",
            timeout.as_secs()
        ))
        .into_response(),
    }
}

/// The federation router: the server-server API and nothing else.
pub fn build_federation(services: Arc<Services>) -> Router {
    served(api::federation::routes(Router::new()), services).layer(
        TraceLayer::new_for_http().make_span_with(|request: &http::Request<axum::body::Body>| {
            tracing::debug_span!("federation", method = %request.method(), path = %request.uri().path())
        }),
    )
}
