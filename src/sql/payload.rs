//! The rows handed to the sandbox: one Arrow IPC stream written into a
//! memfd and sealed (no write, grow, shrink or further seals), so the child
//! maps the very pages the server wrote: no pipe copy, no second buffer in
//! the server, and nothing the child can change or grow.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::SqlError;

/// `MFD_NOEXEC_SEAL` (linux/memfd.h), which nix 0.30 does not name.
const MFD_NOEXEC_SEAL: std::ffi::c_uint = 0x0008;

/// Large buffers skip the writer's buffer and go to the memfd directly.
const WRITE_BUFFER: usize = 1 << 20;

/// A sealed memfd holding one Arrow IPC stream.
#[derive(Debug)]
pub struct ArrowFile {
    file: File,
    len: u64,
}

impl ArrowFile {
    pub(super) fn write(schema: &Schema, batch: &RecordBatch) -> Result<Self, SqlError> {
        let io = |what: &str, e: &dyn std::fmt::Display| SqlError::Encode(format!("{what}: {e}"));
        let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
        // Not executable (Linux 6.3+, which warns without it), else as before.
        let fd = memfd_create(c"sluice-rows", flags | MFdFlags::from_bits_retain(MFD_NOEXEC_SEAL))
            .or_else(|_| memfd_create(c"sluice-rows", flags))
            .map_err(|e| io("creating the rows' memfd", &e))?;
        let file = File::from(fd);
        {
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, &file);
            let mut w = StreamWriter::try_new(&mut out, schema).map_err(|e| io("writing the rows", &e))?;
            w.write(batch).map_err(|e| io("writing the rows", &e))?;
            w.finish().map_err(|e| io("writing the rows", &e))?;
            drop(w);
            out.flush().map_err(|e| io("writing the rows", &e))?;
        }
        let seals =
            SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| io("sealing the rows' memfd", &e))?;
        let len = file.metadata().map_err(|e| io("sizing the rows' memfd", &e))?.len();
        Ok(Self { file, len })
    }

    /// Bytes of the IPC stream.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fd to hand on (the child gets its own copy of it).
    pub fn into_fd(self) -> OwnedFd {
        OwnedFd::from(self.file)
    }

    /// The stream's bytes, copied (tests, small uses).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; self.len as usize];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field};

    use super::*;

    #[test]
    fn the_memfd_is_sealed_against_every_change() {
        let schema = Arc::new(Schema::new(vec![Field::new("i", DataType::Int64, true)]));
        let array: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
        let f = ArrowFile::write(&schema, &batch).unwrap();
        assert!(!f.is_empty());
        let bytes = f.to_vec().unwrap();
        assert_eq!(bytes.len() as u64, f.len());
        // Not even through a fresh, writable open of the same file.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f.file));
        let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(w.write_at(b"x", 0).is_err(), "a sealed memfd took a write");
        assert!(w.set_len(f.len() * 2).is_err(), "a sealed memfd grew");
        assert!(w.set_len(1).is_err(), "a sealed memfd shrank");
        let seals = fcntl(&f.file, FcntlArg::F_GET_SEALS).unwrap();
        assert_ne!(seals & SealFlag::F_SEAL_SEAL.bits(), 0);
    }
}
