//! A BOSH session as the byte transport of a stream ([`crate::io::Io`]):
//! reads give the stream machine what the client's requests carried,
//! in rid order; writes go to the client's waiting requests. Reads end
//! when the client's stream ends, when the session is over, or when the
//! client has made no request for the inactivity period (XEP-0124 §8),
//! which this side's timer watches.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Session;
use super::session::Read;

pub(crate) struct BoshIo {
    session: Arc<Session>,
    /// The inactivity deadline, armed while no request waits.
    timer: Pin<Box<Sleep>>,
}

impl BoshIo {
    pub fn new(session: Arc<Session>) -> BoshIo {
        BoshIo {
            session,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }
}

impl AsyncRead for BoshIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        loop {
            let now = Instant::now();
            match me.session.with(|st| st.read(buf, cx.waker(), now)) {
                Read::Data | Read::End => return Poll::Ready(Ok(())),
                Read::Wait(None) => return Poll::Pending,
                Read::Wait(Some(deadline)) => {
                    if me.timer.deadline() != deadline {
                        me.timer.as_mut().reset(deadline);
                    }
                    if me.timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl AsyncWrite for BoshIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let now = Instant::now();
        if self.session.with(|st| st.output(buf, cx.waker(), now)) {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Pending
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = Instant::now();
        self.session.with(|st| st.lost(now));
        Poll::Ready(Ok(()))
    }
}

impl Drop for BoshIo {
    fn drop(&mut self) {
        let now = Instant::now();
        let (told, wait) = self.session.with(|st| {
            st.lost(now);
            (st.gone, st.terms().inactivity)
        });
        if told {
            return;
        }
        // The end waits for the client's next request; a client that
        // never makes one is forgotten after the inactivity period.
        let session = self.session.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(wait).await;
                    session.with(|st| st.close());
                });
            }
            Err(_) => session.with(|st| st.close()),
        }
    }
}
