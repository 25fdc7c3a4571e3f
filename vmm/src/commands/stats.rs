//! `lde stats PATH`: prints the live counters a running `lde run --api-sock PATH` serves, as
//! pretty JSON.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use super::Error;
use crate::cli::StatsArgs;

pub fn stats(args: StatsArgs) -> Result<ExitCode, Error> {
    let mut text = String::new();
    UnixStream::connect(&args.socket)
        // Closing our side at once says "no request": the answer is plain JSON.
        .and_then(|mut s| s.shutdown(std::net::Shutdown::Write).and_then(|()| s.read_to_string(&mut text)))
        .map_err(|e| Error::ApiRead(args.socket.clone(), e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::ApiJson(args.socket.clone(), e))?;
    println!("{}", serde_json::to_string_pretty(&value).expect("a parsed value serializes"));
    Ok(ExitCode::SUCCESS)
}
