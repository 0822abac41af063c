//! The memory budget of directory syncs (`--sync-memory`): each sync takes a
//! share before it reads and gives it back when it ends, so that concurrent
//! syncs of large organizations wait for each other instead of exceeding the
//! process's memory limit.
//!
//! A sync streams what it reads into the store (`read::stream_scope`): it holds
//! the pages in flight, the department frontier and, once the read is done, the
//! members missing from it. Its share is estimated from the directory's size
//! before the sync (what the previous run left): a fixed part for the pages and
//! buffers, plus a few bytes per member for what grows with the organization.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The default budget: the Deployment in `manifests/` limits the controller to
/// 512 MiB; syncs get 384 of them, the rest is the process's own.
pub const DEFAULT_SYNC_MEMORY_MIB: u32 = 384;

/// What any sync holds, whatever the organization: pages in flight (a bounded
/// channel of them), the staging batch, the HTTP and database buffers.
const BASE_MIB: u64 = 16;

/// What grows with the organization, per member of the directory: the
/// department frontier, the scope's department ids, and the members missing
/// from a read (kept with their departments for the removal checks).
const BYTES_PER_MEMBER: u64 = 24;

/// The budget shared by the syncs of one process.
#[derive(Debug)]
pub struct SyncMemory {
    permits: Semaphore,
    total_mib: u32,
}

impl SyncMemory {
    /// A budget of `total_mib` MiB (at least 1).
    pub fn new(total_mib: u32) -> Self {
        let total_mib = total_mib.max(1);
        SyncMemory {
            permits: Semaphore::new(total_mib as usize),
            total_mib,
        }
    }

    /// The budget, in MiB.
    pub fn total_mib(&self) -> u32 {
        self.total_mib
    }

    /// The share, in MiB, of a sync of a directory of `members` members:
    /// never more than the whole budget, so that any one sync can run.
    pub fn share_mib(&self, members: u64) -> u32 {
        let mib = BASE_MIB + (members.saturating_mul(BYTES_PER_MEMBER)).div_ceil(1 << 20);
        u32::try_from(mib).unwrap_or(u32::MAX).min(self.total_mib)
    }

    /// Waits until the share of a sync of `members` members is free, and
    /// holds it until the permit is dropped. (`None` only if the semaphore
    /// were closed, which nothing does.)
    pub async fn acquire(&self, members: u64) -> Option<SemaphorePermit<'_>> {
        self.permits
            .acquire_many(self.share_mib(members))
            .await
            .ok()
    }
}

impl Default for SyncMemory {
    fn default() -> Self {
        SyncMemory::new(DEFAULT_SYNC_MEMORY_MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_grows_with_the_directory_and_never_exceeds_the_budget() {
        let budget = SyncMemory::new(384);
        assert_eq!(budget.share_mib(0), 16);
        assert!(budget.share_mib(1_000_000) > budget.share_mib(100_000));
        assert_eq!(SyncMemory::new(20).share_mib(10_000_000), 20);
    }

    #[tokio::test]
    async fn syncs_beyond_the_budget_wait_for_a_share_to_be_given_back() {
        let budget = SyncMemory::new(40);
        let first = budget.acquire(0).await;
        let _second = budget.acquire(0).await;
        // 16 + 16 taken: a third share of 16 does not fit in 40.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), budget.acquire(0));
        assert!(third.await.is_err(), "a third sync fits in the budget");
        drop(first);
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), budget.acquire(0));
        assert!(third.await.is_ok(), "the share given back was not taken");
    }
}
