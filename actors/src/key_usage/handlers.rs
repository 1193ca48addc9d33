//! Messages the key-usage recorder handles.

use super::KeyUsageRecorder;
use actix::prelude::*;
use chrono::{DateTime, Utc};

/// "This key was used at this time." Sent with `do_send` from the request path.
#[derive(Message)]
#[rtype(result = "()")]
pub struct KeyUsed {
    pub key_id: u64,
    pub at: DateTime<Utc>,
}

impl Handler<KeyUsed> for KeyUsageRecorder {
    type Result = ();

    fn handle(&mut self, msg: KeyUsed, _ctx: &mut Self::Context) {
        self.note(msg.key_id, msg.at);
    }
}

/// Write everything pending now; answers how many keys were written.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct Flush;

impl Handler<Flush> for KeyUsageRecorder {
    type Result = AtomicResponse<Self, Result<usize, String>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        self.drain();
        AtomicResponse::new(self.flush_future())
    }
}
