//! A future that is polled only after it was woken.
//!
//! `tokio::join!` and `tokio::select!` poll every branch whenever their task
//! is woken, whichever branch the wake-up was for. A viewer session joins a
//! read side, which almost never has anything to do, with a write side that
//! is woken for every value sent; without this wrapper each value would also
//! poll the idle read side (a lock of the connection's state in quinn and a
//! look at its receive buffers).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Wraps `future` so that polling it does nothing until its own waker fired
/// (or on the first poll).
pub(crate) fn poll_when_woken<F: Future>(future: F) -> PollWhenWoken<F> {
    let flag = Arc::new(WakeFlag {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    PollWhenWoken {
        future: Box::pin(future),
        waker: Waker::from(Arc::clone(&flag)),
        flag,
    }
}

/// See [`poll_when_woken`].
pub(crate) struct PollWhenWoken<F> {
    future: Pin<Box<F>>,
    /// Handed to the inner future; sets `flag` and wakes the task.
    waker: Waker,
    flag: Arc<WakeFlag>,
}

struct WakeFlag {
    /// The inner future asked to be polled since it was last polled.
    woken: AtomicBool,
    /// The task driving the wrapper.
    task: Mutex<Option<Waker>>,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Future for PollWhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut task = this
                .flag
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|task| task.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.future
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set (and it is woken).
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            *self.waker.lock().expect("lock") = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_after_its_own_wake_up() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(Mutex::new(None::<Waker>));
        let mut wrapped = poll_when_woken(Probe {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&inner_waker),
        });
        let task_wakes = Arc::new(AtomicUsize::new(0));
        struct CountingWaker(Arc<AtomicUsize>);
        impl Wake for CountingWaker {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let task = Waker::from(Arc::new(CountingWaker(Arc::clone(&task_wakes))));
        let mut cx = Context::from_waker(&task);
        let mut wrapped = Pin::new(&mut wrapped);

        assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "the first poll goes through"
        );
        // The task is polled again for someone else's sake: the inner future is not.
        for _ in 0..10 {
            assert!(wrapped.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1);

        // Its own wake-up wakes the task and lets the next poll through.
        ready.store(true, Ordering::Relaxed);
        inner_waker
            .lock()
            .expect("lock")
            .take()
            .expect("registered")
            .wake();
        assert_eq!(task_wakes.load(Ordering::Relaxed), 1);
        assert!(wrapped.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
