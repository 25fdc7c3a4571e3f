//! `lde stats PATH`: prints the live counters a running `lde run --api-sock PATH` serves, as
//! pretty JSON. A server that never answers (or never stops talking) is given up on after
//! `--timeout`, and no more than [`MAX_ANSWER`] bytes are read.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use super::Error;
use crate::cli::StatsArgs;

/// The largest answer read from the socket (a report is a few hundred KiB at most).
const MAX_ANSWER: u64 = 64 << 20;

pub fn stats(args: StatsArgs) -> Result<ExitCode, Error> {
    // Connecting can block too (a full listen backlog), so the whole exchange runs on a helper
    // thread and this one waits for it at most --timeout; one left behind ends with lde.
    let (tx, rx) = mpsc::channel();
    let socket = args.socket.clone();
    std::thread::Builder::new()
        .name("lde-stats".into())
        .spawn(move || {
            let _ = tx.send(fetch(socket));
        })
        .map_err(|e| Error::ApiRead(args.socket.clone(), e))?;
    let text = match rx.recv_timeout(args.timeout) {
        Ok(result) => result.map_err(|e| Error::ApiRead(args.socket.clone(), e))?,
        Err(_) => return Err(Error::ApiTimeout(args.socket.clone(), args.timeout)),
    };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| Error::ApiJson(args.socket.clone(), e))?;
    println!("{}", serde_json::to_string_pretty(&value).expect("a parsed value serializes"));
    Ok(ExitCode::SUCCESS)
}

fn fetch(socket: PathBuf) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    let stream = UnixStream::connect(socket)?;
    // Closing our side at once says "no request": the answer is plain JSON.
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.take(MAX_ANSWER).read_to_end(&mut text)?;
    Ok(text)
}
