//! gdbstub's blocking event loop over the machine: run the guest, and look at the connection
//! between returns from vCPU 0's `KVM_RUN` (or waits for the other vCPUs).

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};

use super::conn::Conn;
use super::target::{tid, StopReason as Reason, TargetFault, VcpuTarget};

/// gdbstub's blocking event loop over [`VcpuTarget`].
pub enum EventLoop<'a> {
    #[allow(dead_code)] // only a type: the lifetime of the target it drives
    Never(std::marker::PhantomData<&'a ()>),
}

impl<'a> BlockingEventLoop for EventLoop<'a> {
    type Target = VcpuTarget<'a>;
    type Connection = Conn;
    type StopReason = Reason;

    /// Runs the guest, looking at the connection after every return from `KVM_RUN` (the vCPU
    /// thread is kicked out of it 20 times a second while GDB is attached, so that Ctrl-C in
    /// GDB is seen even when the guest makes no VM exit).
    fn wait_for_stop_reason(
        target: &mut VcpuTarget<'a>,
        conn: &mut Conn,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<TargetFault, std::io::Error>> {
        loop {
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                let byte = conn.read().map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
            if let Some(reason) = target.run_once().map_err(WaitForStopReasonError::Target)? {
                return Ok(Event::TargetStopped(reason));
            }
        }
    }

    fn on_interrupt(target: &mut VcpuTarget<'a>) -> Result<Option<Self::StopReason>, TargetFault> {
        target.pause();
        Ok(Some(Reason::SignalWithThread { tid: tid(0), signal: Signal::SIGINT }))
    }
}
