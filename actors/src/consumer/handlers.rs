//! Messages the consumer actor handles.

use super::{BatchHandler, ConsumerActor};
use actix::prelude::*;

/// Stops the consumer for good (shutdown); a supervisor does not restart a stopped-by-request
/// actor once its address is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl<H: BatchHandler> Handler<Stop> for ConsumerActor<H> {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        // A stopped consumer is not stuck: whatever batch it held is delivered again to
        // whoever consumes the partition next.
        self.probe.idle();
        ctx.stop();
    }
}
