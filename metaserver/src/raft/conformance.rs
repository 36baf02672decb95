//! openraft's storage conformance suite against our log store and state machine.

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::store::RedbStore;
use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use std::sync::Arc;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<TypeConfig>> {
        let log = LogStore::in_memory().expect("in-memory log store");
        let store = Arc::new(RedbStore::in_memory().expect("in-memory namespace store"));
        let sm = StateMachine::new(store).expect("state machine");
        Ok(((), log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite_passes() {
    Suite::test_all(Builder).await.expect("conformance suite");
}
