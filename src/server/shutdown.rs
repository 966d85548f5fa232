//! The one shutdown signal every task listens to.
//!
//! `Shutdown::new()` gives a trigger and a listener; listeners are cloned into every
//! task. Triggering (SIGTERM, SIGINT, or dropping the trigger) wakes them all at once.

#[derive(Clone)]
pub struct Shutdown {
    rx: async_channel::Receiver<()>,
}

pub struct Trigger {
    tx: async_channel::Sender<()>,
}

impl Shutdown {
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = async_channel::bounded(1);
        (Trigger { tx }, Shutdown { rx })
    }

    /// Resolves once shutdown has been triggered.
    pub async fn wait(&self) {
        // Nothing is ever sent: the channel closing is the signal.
        let _ = self.rx.recv().await;
    }

    /// `f`'s output, or `None` once shutdown has been triggered first.
    pub async fn until<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        let work = async { Some(f.await) };
        let stop = async {
            self.wait().await;
            None
        };
        futures_lite::future::or(work, stop).await
    }
}

impl Trigger {
    pub fn fire(&self) {
        self.tx.close();
    }
}

/// Counts running tasks so shutdown can wait for all of them: each task holds a
/// [`TaskGuard`]; [`TaskGroup::wait`] returns when the last one is dropped.
pub struct TaskGroup {
    tx: Option<async_channel::Sender<()>>,
    rx: async_channel::Receiver<()>,
}

pub struct TaskGuard {
    _tx: async_channel::Sender<()>,
}

impl TaskGroup {
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        TaskGroup { tx: Some(tx), rx }
    }

    pub fn guard(&self) -> Option<TaskGuard> {
        self.tx.as_ref().map(|tx| TaskGuard { _tx: tx.clone() })
    }

    /// Tasks still holding a guard.
    pub fn running(&self) -> usize {
        self.rx
            .sender_count()
            .saturating_sub(usize::from(self.tx.is_some()))
    }

    pub async fn wait(mut self) {
        self.tx = None;
        let _ = self.rx.recv().await;
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}
