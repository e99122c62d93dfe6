//! The HTTP edge's accept loop: connections in, the axum router answering on each, with
//! the limits `[http]` sets (see [`HttpSettings`]).
//!
//! ```text
//! accept ─(a permit of max_connections; none free: the next accept waits)─▶ connection:
//!   hyper HTTP/1 ◀─ bytes ─ Watched stream (counts reads)
//!     request ─▶ Tracked service: in flight +1, body under a deadline ─▶ router ─▶ response
//!       (in flight −1 when the response body is done or dropped)
//!   watchdog: no request in flight and a head started  → header_read_timeout → close
//!             no request in flight, nothing arriving   → idle_timeout        → close
//! ```
//!
//! A connection is only ever cut by the watchdog while no request is in flight, so an
//! acknowledged webhook is never lost to it; a request whose body does not arrive within
//! `body_timeout_ms` of its head is answered 408 and the connection closed. At shutdown
//! (the stop watch) the loop stops accepting, every connection finishes its in-flight
//! request and closes (hyper's graceful shutdown; idle ones at once), and [`serve`]
//! returns when all permits are back, i.e. every connection has closed.

use crate::lock::LockExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::config::HttpSettings;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `app` on `listener` under `settings` until `stop` turns true, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    stop: CancellationToken,
) {
    let limits = Limits {
        header: Duration::from_millis(settings.header_read_timeout_ms),
        idle: Duration::from_millis(settings.idle_timeout_ms),
        body: Duration::from_millis(settings.body_timeout_ms),
    };
    let max = settings.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            app.clone(),
            limits,
            stop.clone(),
            permit,
        ));
    }
    drop(listener);
    // Each connection holds its permit until it has closed: all back, all closed.
    let _ = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    header: Duration,
    idle: Duration,
    body: Duration,
}

/// One connection, until it ends, the watchdog cuts it, or shutdown drains it.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let track = Arc::new(Track::new());
    let io = TokioIo::new(Watched {
        stream,
        track: track.clone(),
    });
    let service = Tracked {
        app,
        track: track.clone(),
        body_timeout: limits.body,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        // The watchdog below times heads and idle connections.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let watchdog = watchdog(track, limits);
    tokio::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            // Nothing in flight: dropping the connection closes the socket.
            _ = &mut watchdog => break,
            _ = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(permit);
}

/// What the watchdog needs to know about a connection.
struct Track {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_flight: usize,
    /// When the head being read began (its first byte; accept for a new connection).
    head_since: Option<Instant>,
    /// When the last request finished.
    idle_since: Instant,
}

impl Track {
    fn new() -> Track {
        let now = Instant::now();
        Track {
            state: Mutex::new(State {
                in_flight: 0,
                head_since: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.locked();
        let out = f(&mut state);
        drop(state);
        self.changed.notify_waiters();
        out
    }

    fn bytes_read(&self) {
        let mut state = self.state.locked();
        if state.in_flight == 0 && state.head_since.is_none() {
            state.head_since = Some(Instant::now());
            drop(state);
            self.changed.notify_waiters();
        }
    }

    fn deadline(&self, limits: Limits) -> Option<Instant> {
        let state = self.state.locked();
        if state.in_flight > 0 {
            None
        } else if let Some(since) = state.head_since {
            Some(since + limits.header)
        } else {
            Some(state.idle_since + limits.idle)
        }
    }
}

/// Returns when the connection has overrun its head or idle deadline.
async fn watchdog(track: Arc<Track>, limits: Limits) {
    loop {
        let changed = track.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        match track.deadline(limits) {
            None => changed.await,
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if track.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                            return;
                        }
                    }
                    _ = changed => {}
                }
            }
        }
    }
}

/// A request in flight, from the service call until its response body is done.
struct InFlight(Arc<Track>);

impl InFlight {
    fn enter(track: Arc<Track>) -> InFlight {
        track.with(|s| {
            s.in_flight += 1;
            s.head_since = None;
        });
        InFlight(track)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// The socket, telling the [`Track`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    track: Arc<Track>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.track.bytes_read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The router, with the request counted in flight and its body under the deadline.
#[derive(Clone)]
struct Tracked {
    app: Router,
    track: Arc<Track>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::enter(self.track.clone());
        let expired = Arc::new(AtomicBool::new(false));
        let (parts, incoming) = request.into_parts();
        let deadline = DeadlineBody {
            inner: Body::new(incoming),
            sleep: Box::pin(tokio::time::sleep(self.body_timeout)),
            expired: expired.clone(),
        };
        let request = Request::from_parts(parts, Body::new(deadline));
        let mut app = self.app.clone();
        Box::pin(async move {
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            // The handler gave up on a body that did not arrive in time (its own answer
            // says "cannot read the body"): say what happened, and close.
            let response = if expired.load(Ordering::SeqCst) {
                (
                    StatusCode::REQUEST_TIMEOUT,
                    [(header::CONNECTION, "close")],
                    "request body not received in time\n",
                )
                    .into_response()
            } else {
                response
            };
            Ok(response.map(|body| TrackedBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The response body; the request stays in flight until it is done or dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body's deadline ran out.
#[derive(Debug)]
struct BodyDeadline;

impl std::fmt::Display for BodyDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyDeadline {}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
