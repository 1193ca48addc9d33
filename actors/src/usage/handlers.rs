//! Messages the usage recorder handles.

use super::{Flushed, UsageRecorder};
use crate::ports::{AuditEntry, ClickCell, UsageCell, UsageCounts};
use actix::prelude::*;

/// One answered request, sent with `do_send` from the request path.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Requested {
    pub cell: UsageCell,
    pub counts: UsageCounts,
}

impl Handler<Requested> for UsageRecorder {
    type Result = ();

    fn handle(&mut self, msg: Requested, _ctx: &mut Self::Context) {
        self.count(msg.cell, msg.counts);
    }
}

/// One answered API request: its usage count (requests that presented a valid key) and its
/// audit row, in one message so recording a request is one bounded push.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Answered {
    pub usage: Option<(UsageCell, UsageCounts)>,
    pub audit: AuditEntry,
}

impl Handler<Answered> for UsageRecorder {
    type Result = ();

    fn handle(&mut self, msg: Answered, _ctx: &mut Self::Context) {
        if let Some((cell, counts)) = msg.usage {
            self.count(cell, counts);
        }
        self.audit(msg.audit);
    }
}

/// One click on a campaign's link.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Clicked {
    pub cell: ClickCell,
}

impl Handler<Clicked> for UsageRecorder {
    type Result = ();

    fn handle(&mut self, msg: Clicked, _ctx: &mut Self::Context) {
        self.click(msg.cell, 1);
    }
}

/// One audit row.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Audited(pub AuditEntry);

impl Handler<Audited> for UsageRecorder {
    type Result = ();

    fn handle(&mut self, msg: Audited, _ctx: &mut Self::Context) {
        self.audit(msg.0);
    }
}

/// Write everything pending now; answers what was written.
#[derive(Message)]
#[rtype(result = "Result<Flushed, String>")]
pub struct Flush;

impl Handler<Flush> for UsageRecorder {
    type Result = AtomicResponse<Self, Result<Flushed, String>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Self::Context) -> Self::Result {
        AtomicResponse::new(self.flush_future())
    }
}
