//! Turns a panicking handler into an `Internal` reply instead of a silent hang for the
//! caller.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Wraps a boxed future and reports a panic in `poll` as an error.
pub(crate) struct CatchPanic<T> {
    inner: Pin<Box<dyn Future<Output = T> + Send>>,
}

impl<T> CatchPanic<T> {
    pub(crate) fn new(inner: Pin<Box<dyn Future<Output = T> + Send>>) -> Self {
        Self { inner }
    }
}

impl<T> Future for CatchPanic<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The future is never polled again after a panic, so unwind safety holds.
        match catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                Poll::Ready(Err(msg))
            }
        }
    }
}
