//! Request bodies at the edge: one deadline for the whole body, a declared length over the
//! route's bound refused before a byte is read, encodings and media types checked, and the
//! unread rest of a refused request drained (bounded) so a kept-alive connection survives.
//!
//! The edge hands the handler an [`EdgeBody`] that reads from a body it shares with the edge.
//! A handler that answers before reading (a 401, a 415) leaves the body there; the edge then
//! reads what is left, up to [`DRAIN_MAX_BYTES`] and within the same deadline, before the
//! response goes out. Without that, hyper closes the connection (it cannot tell where the
//! next request starts) and a pooled client sees "server disconnected" on its next call.

use crate::error::GatewayError;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::HeaderMap;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::time::Instant;

/// The most the edge reads of a body nobody read, to keep its connection: any request an SDK
/// sends is smaller; past it (or past the deadline) the connection is closed instead.
pub(crate) const DRAIN_MAX_BYTES: u64 = 256 * 1024;

/// The body did not arrive in time (the error an [`EdgeBody`] yields at its deadline).
#[derive(Debug, thiserror::Error)]
#[error("request body read timed out after {0} ms")]
pub(crate) struct BodyTimedOut(u64);

/// The request body as handlers see it: the shared body, cut off at the deadline.
pub(crate) struct EdgeBody {
    shared: Arc<Mutex<Body>>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout_ms: u64,
}

/// The edge's side of a request body: what is left of it after the handler.
pub(crate) struct Leftover {
    shared: Arc<Mutex<Body>>,
    deadline: Instant,
}

/// Wraps a request body: it must have arrived within `timeout_ms` of now (the request head).
pub(crate) fn wrap(body: Body, timeout_ms: u64) -> (Body, Leftover) {
    let deadline = Instant::now() + std::time::Duration::from_millis(timeout_ms);
    let shared = Arc::new(Mutex::new(body));
    let edge = EdgeBody {
        shared: shared.clone(),
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        timeout_ms,
    };
    (Body::new(edge), Leftover { shared, deadline })
}

impl HttpBody for EdgeBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = {
            let mut inner = this.shared.lock().unwrap_or_else(PoisonError::into_inner);
            Pin::new(&mut *inner).poll_frame(cx)
        };
        match polled {
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout_ms)))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .size_hint()
    }
}

impl Leftover {
    /// Reads and discards what the handler left of the body, if it is small and arrives in
    /// time; otherwise leaves it, and hyper closes the connection after the response.
    pub(crate) async fn drain(self) {
        let mut body =
            std::mem::take(&mut *self.shared.lock().unwrap_or_else(PoisonError::into_inner));
        if body.is_end_stream() || body.size_hint().lower() > DRAIN_MAX_BYTES {
            return;
        }
        let read = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_MAX_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout_at(self.deadline, read).await;
    }
}

/// No route decodes compressed bodies, so anything but `identity` is refused (a gzipped body
/// would otherwise be parsed as JSON and fail with a misleading message, and decompression
/// would need its own bomb bound).
pub(crate) fn check_encoding(headers: &HeaderMap) -> Result<(), GatewayError> {
    for v in headers.get_all("content-encoding") {
        let v = String::from_utf8_lossy(v.as_bytes());
        for coding in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("identity") {
                return Err(GatewayError::UnsupportedMediaType(format!(
                    "content-encoding {:?} is not supported; send the body uncompressed",
                    crate::bounds::echo(coding)
                )));
            }
        }
    }
    Ok(())
}

/// JSON routes take `application/json` (any parameters, e.g. `charset=utf-8`). A request
/// without a `content-type` is read as JSON too (hand-written clients often omit it; every
/// official SDK sends it); any other declared type is a 415 naming it.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(v) = headers.get("content-type") else {
        return Ok(());
    };
    let v = String::from_utf8_lossy(v.as_bytes());
    let media = v.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType(format!(
            "content-type {:?} is not supported on this route; send application/json",
            crate::bounds::echo(media)
        )))
    }
}

/// Reads the body up to `limit` bytes: a declared length over it is a 413 before any byte is
/// read, a body that grows past it a 413, one that stalls past the deadline a 408.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(GatewayError::BodyTooLarge(limit));
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(GatewayError::BodyTooLarge(limit));
            }
            // The body's own error comes through boxed, in one or more wrappers.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
            let mut timed_out = None;
            while let Some(c) = cause {
                if let Some(t) = c.downcast_ref::<BodyTimedOut>() {
                    timed_out = Some(t);
                    break;
                }
                cause = c.source();
            }
            match timed_out {
                Some(t) => Err(GatewayError::BodyTimeout(t.0)),
                None => Err(GatewayError::InvalidRequest {
                    message: "could not read the request body".into(),
                    param: None,
                }),
            }
        }
    }
}
