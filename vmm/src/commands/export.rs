//! `lde export`: writes the kernel, the initrd and the command line `lde run` would boot to a
//! directory (what scripts/qemu.sh boots), and the same kernel and built-in programs with their
//! debug information (what GDB reads: scripts/gdb.sh).

use std::process::ExitCode;

use super::{prepare_programs, Error};
use crate::cli::ExportArgs;

pub fn export(args: ExportArgs) -> Result<ExitCode, Error> {
    let (initrd, cmdline) = prepare_programs(&args.programs, &args.cmdline)?;
    let write = |name: &str, bytes: &[u8]| {
        let path = args.dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::Write(path, e))
    };
    std::fs::create_dir_all(&args.dir).map_err(|e| Error::CreateDir(args.dir.clone(), e))?;
    write("kernel.elf", lde::guest::KERNEL)?;
    write("initrd.cpio", &initrd)?;
    write("cmdline", cmdline.as_bytes())?;
    write("kernel.debug", lde::guest::KERNEL_DEBUG)?;
    let programs = args.dir.join("programs");
    std::fs::create_dir_all(&programs).map_err(|e| Error::CreateDir(programs.clone(), e))?;
    for program in lde::guest::PROGRAMS {
        write(&format!("programs/{}.debug", program.name), program.debug)?;
    }
    Ok(ExitCode::SUCCESS)
}
