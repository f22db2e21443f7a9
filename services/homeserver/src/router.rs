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

/// Marks a route as rate-limited regardless of the spec's metadata.
#[derive(Clone, Copy)]
pub(crate) struct ForceRateLimit;

/// Adds ruma endpoints to a router.
pub(crate) trait RumaRouter {
    fn ruma<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static;

    /// Like [`RumaRouter::ruma`], rate-limited even where the spec does not
    /// require it (sending events: a flood is a denial of service).
    fn ruma_limited<T, F, Fut>(self, handler: F) -> Self
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

    fn ruma_limited<T, F, Fut>(self, handler: F) -> Self
    where
        T: IncomingRequest + Send + 'static,
        T::Authentication: 'static,
        F: Fn(Arc<Services>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
    {
        let limited = Router::new().ruma(handler).layer(Extension(ForceRateLimit));
        self.merge(limited)
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
    let router = api::client::routes(Router::new())
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request.") })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed for this endpoint.",
            )
        });
    router
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_| Error::internal("handler panicked").into_response()))
        .layer(CorsLayer::permissive().max_age(Duration::from_secs(86400)))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &http::Request<axum::body::Body>| {
            // The path only: query strings can carry access tokens.
            tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(services)
}

/// The federation router: the server-server API and nothing else.
pub fn build_federation(services: Arc<Services>) -> Router {
    api::federation::routes(Router::new())
        .fallback(|| async { Error::unrecognized(StatusCode::NOT_FOUND, "Unrecognized request.") })
        .method_not_allowed_fallback(|| async {
            Error::unrecognized(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed for this endpoint.",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(CatchPanicLayer::custom(|_| Error::internal("handler panicked").into_response()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &http::Request<axum::body::Body>| {
            tracing::debug_span!("federation", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(services)
}
