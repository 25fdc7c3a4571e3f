//! Serving block requests: each descriptor chain is a header (type, sector), the data, and a
//! status byte the device writes. Everything in a chain is the guest's to forge, so every length
//! and offset is checked and a bad request gets `VIRTIO_BLK_S_IOERR`, never a panic.

use std::io::{Read, Write};

use lde_abi::virtio::{BLK_S_IOERR, BLK_S_OK, BLK_S_UNSUPP, BLK_T_FLUSH, BLK_T_IN, BLK_T_OUT, SECTOR_SIZE};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap};

use super::image::DiskImage;

/// Largest piece of a transfer held in lde's memory at once.
const CHUNK: usize = 64 * 1024;
/// Largest transfer one request may ask for. A guest's descriptors can add up to gigabytes (64
/// of up to 4 GiB each, over the same guest pages); one such request would hold the event loop,
/// and with it SIGTERM, `--timeout` and stdin, for seconds. lde's kernel asks for 20 KiB at most.
pub const MAX_TRANSFER: u64 = 1 << 20;

/// A request header, as the guest lays it out (`struct virtio_blk_outhdr`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Header {
    kind: u32,
    _ioprio: u32,
    sector: u64,
}

// SAFETY: plain integers with no padding; any bit pattern is a valid `Header`.
unsafe impl ByteValued for Header {}

/// What a request asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Flush,
    /// An unknown type, or a chain whose header could not be read.
    #[default]
    Other,
}

impl Kind {
    fn of(kind: u32) -> Kind {
        match kind {
            BLK_T_IN => Kind::Read,
            BLK_T_OUT => Kind::Write,
            BLK_T_FLUSH => Kind::Flush,
            _ => Kind::Other,
        }
    }
}

/// What one request did, for the device's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub kind: Kind,
    /// Bytes the device wrote into the guest's buffers (the used element's length).
    pub written_to_guest: u32,
    /// Bytes of data moved between the image and the guest (0 for a failed request).
    pub data_bytes: u64,
    pub status: u8,
}

type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// Serves one request chain on `image`.
pub fn serve(chain: Chain<'_>, mem: &GuestMemoryMmap, image: &DiskImage) -> Served {
    let (Ok(mut reader), Ok(mut writer)) = (Reader::new(mem, chain.clone()), Writer::new(mem, chain)) else {
        return Served::default(); // a chain outside guest memory: nothing can be written back
    };
    if writer.available_bytes() == 0 {
        return Served::default(); // no room for even the status byte
    }
    let Ok(mut status_writer) = writer.split_at(writer.available_bytes() - 1) else {
        return Served::default();
    };
    let (kind, status, data_bytes) = match reader.read_obj::<Header>() {
        Ok(header) => {
            let (status, data_bytes) = run(header, &mut reader, &mut writer, image);
            (Kind::of(header.kind), status, data_bytes)
        }
        Err(_) => (Kind::Other, BLK_S_IOERR, 0),
    };
    let data_written = writer.bytes_written();
    let _ = status_writer.write_all(&[status]);
    let written_to_guest = u32::try_from(data_written + status_writer.bytes_written()).unwrap_or(u32::MAX);
    Served { kind, written_to_guest, data_bytes, status }
}

/// Carries out `header`'s request; returns its status and the data bytes it moved.
fn run(header: Header, reader: &mut Reader<'_>, writer: &mut Writer<'_>, image: &DiskImage) -> (u8, u64) {
    match header.kind {
        BLK_T_IN => match range(header.sector, writer.available_bytes(), image) {
            Some((offset, len)) => {
                transfer(|buf, at| image.read_at(buf, at).and_then(|()| writer.write_all(buf)), offset, len)
            }
            None => (BLK_S_IOERR, 0),
        },
        BLK_T_OUT if image.read_only() => (BLK_S_IOERR, 0),
        BLK_T_OUT => match range(header.sector, reader.available_bytes(), image) {
            Some((offset, len)) => {
                transfer(|buf, at| reader.read_exact(buf).and_then(|()| image.write_at(buf, at)), offset, len)
            }
            None => (BLK_S_IOERR, 0),
        },
        BLK_T_FLUSH => match image.flush() {
            Ok(()) => (BLK_S_OK, 0),
            Err(_) => (BLK_S_IOERR, 0),
        },
        _ => (BLK_S_UNSUPP, 0),
    }
}

/// The byte range `[offset, offset + len)` of a transfer of `len` bytes at `sector`, if it is
/// whole sectors, at most [`MAX_TRANSFER`], and lies inside the image.
fn range(sector: u64, len: usize, image: &DiskImage) -> Option<(u64, u64)> {
    let len = len as u64;
    if len % SECTOR_SIZE != 0 || len > MAX_TRANSFER {
        return None;
    }
    let end_sector = sector.checked_add(len / SECTOR_SIZE)?;
    (end_sector <= image.sectors()).then(|| (sector * SECTOR_SIZE, len))
}

/// Moves `len` bytes from image offset `offset` on in pieces of at most [`CHUNK`], each through
/// `step(buffer, offset)`.
fn transfer(mut step: impl FnMut(&mut [u8], u64) -> std::io::Result<()>, offset: u64, len: u64) -> (u8, u64) {
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = CHUNK.min((len - done) as usize);
        if step(&mut buf[..n], offset + done).is_err() {
            return (BLK_S_IOERR, done);
        }
        done += n as u64;
    }
    (BLK_S_OK, len)
}
