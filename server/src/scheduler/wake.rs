//! Wakes the scheduler when there may be new work: a job submitted or
//! cancelled, a worker attached or gone. Between wake-ups it only runs a
//! slow backstop pass, so a large idle cluster costs the store little.

use std::sync::Arc;

use tokio::sync::Notify;

/// Cheap to clone; every clone wakes the same scheduler. Wake-ups that come
/// while a pass runs are kept (one permit), so none is lost.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Asks for a scheduling pass soon.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next wake-up (at once if one is pending).
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_before_the_wait_is_not_lost() {
        let wake = Wake::default();
        wake.clone().wake();
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.woken()).await.unwrap();
        // Consumed: the next wait blocks until the next wake-up.
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), wake.woken()).await.is_err());
    }
}
