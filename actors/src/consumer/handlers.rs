//! Messages the consumer actor handles.

use super::{ConsumerActor, EventHandler};
use actix::prelude::*;

/// Stops the consumer for good (shutdown); a supervisor does not restart a stopped-by-request
/// actor once its address is dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl<H: EventHandler> Handler<Stop> for ConsumerActor<H> {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
