//! Loading the seccomp filters the server compiled (with seccompiler, from
//! `policies/seccomp/*.json`) into the calling child, as the last step
//! before user code.
//!
//! Wire format, written by the server and read here: for each filter, a
//! little-endian u32 instruction count followed by that many 8-byte
//! `sock_filter` instructions (u16 code, u8 jt, u8 jf, u32 k).

use seccompiler::{BpfProgram, sock_filter};

/// Stands in for the child's pid in rules such as "kill only yourself":
/// the filters are compiled once, so the child patches its own pid in.
pub const PID_PLACEHOLDER: u32 = 2_147_479_565;

const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K

/// Decode the wire format into programs.
pub fn decode(mut bytes: &[u8]) -> Result<Vec<BpfProgram>, i32> {
    let mut programs = Vec::new();
    while !bytes.is_empty() {
        let (count, rest) = bytes.split_first_chunk::<4>().ok_or(libc::EINVAL)?;
        let count = u32::from_le_bytes(*count) as usize;
        let len = count.checked_mul(8).ok_or(libc::EINVAL)?;
        if rest.len() < len || count == 0 {
            return Err(libc::EINVAL);
        }
        let program = rest[..len]
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        programs.push(program);
        bytes = &rest[len..];
    }
    Ok(programs)
}

/// Encode programs into the wire format (used by the server).
pub fn encode(programs: &[&BpfProgram]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in programs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        for i in p.iter() {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
    }
    out
}

/// Replace the pid placeholder in equality jumps with `pid`.
pub fn patch_pid(program: &mut BpfProgram, pid: u32) -> usize {
    let mut n = 0;
    for i in program.iter_mut() {
        if i.code == BPF_JMP_JEQ_K && i.k == PID_PLACEHOLDER {
            i.k = pid;
            n += 1;
        }
    }
    n
}

/// Set no_new_privs and load every program (the kernel applies the
/// strictest answer of all loaded filters).
pub fn apply(bytes: &[u8], pid: u32) -> Result<(), i32> {
    let mut programs = decode(bytes)?;
    for p in &mut programs {
        patch_pid(p, pid);
    }
    for p in &programs {
        // apply_filter sets PR_SET_NO_NEW_PRIVS before SECCOMP_SET_MODE_FILTER.
        seccompiler::apply_filter(p).map_err(|e| match e {
            seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
                io.raw_os_error().unwrap_or(libc::EPERM)
            }
            _ => libc::EINVAL,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_round_trips_and_pid_is_patched() {
        let a: BpfProgram = vec![
            sock_filter { code: BPF_JMP_JEQ_K, jt: 0, jf: 1, k: PID_PLACEHOLDER },
            sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 },
        ];
        let b: BpfProgram = vec![sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];
        let bytes = encode(&[&a, &b]);
        let mut back = decode(&bytes).unwrap();
        assert_eq!(back, vec![a, b]);
        assert_eq!(patch_pid(&mut back[0], 42), 1);
        assert_eq!(back[0][0].k, 42);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
