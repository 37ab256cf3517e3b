//! The three kernel calls steering needs: load a socket-filter program
//! (`BPF_PROG_LOAD`), run it on a test packet (`BPF_PROG_TEST_RUN`, for
//! the tests and the benchmark), and attach it to a reuseport group
//! (`SO_ATTACH_REUSEPORT_EBPF`). Raw `bpf(2)`: the attribute layouts are
//! the kernel's `union bpf_attr`, of which only the fields used are
//! declared; the kernel treats the bytes it is not given as zero.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::asm::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `SO_ATTACH_REUSEPORT_EBPF` (52 on every architecture but MIPS, SPARC,
/// PA-RISC and Alpha, none of which sipshard builds for).
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// `SO_DETACH_REUSEPORT_BPF` (Linux 5.8), likewise.
const SO_DETACH_REUSEPORT_BPF: libc::c_int = 68;

/// `bpf_attr` for `BPF_PROG_LOAD`, up to `prog_name`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `bpf_attr` for `BPF_PROG_TEST_RUN`, up to `duration`.
#[repr(C)]
#[derive(Default)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a repr(C) prefix of `union bpf_attr` for `cmd`,
    // alive and writable for the call; its pointers (set by the callers)
    // point at buffers that outlive the call with the sizes given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Why a program was not loaded: the error, and the verifier's last words
/// when it was the verifier that refused.
#[derive(Debug)]
pub struct LoadError {
    /// The system call's error (EPERM: no CAP_BPF or seccomp; ENOSYS: no
    /// bpf(2); EINVAL or EACCES: the verifier).
    pub error: io::Error,
    /// The verifier's log, its last lines (empty unless it ran).
    pub log: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if !self.log.is_empty() {
            write!(f, " (verifier: {})", self.log)?;
        }
        Ok(())
    }
}

/// Loads `insns` as a socket filter named `name` (at most 15 bytes).
pub fn load(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 1 << 16];
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    let n = name.len().min(15);
    attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // EAGAIN: the verifier stopped for pending signal work (the io_uring
    // probe just before leaves some: TIF_NOTIFY_SIGNAL); libbpf tries 5
    // times too.
    let mut result = bpf(BPF_PROG_LOAD, &mut attr);
    for _ in 0..4 {
        match &result {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                result = bpf(BPF_PROG_LOAD, &mut attr)
            }
            _ => break,
        }
    }
    match result {
        // SAFETY: BPF_PROG_LOAD returns a new descriptor that we own.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EINVAL | libc::EACCES | libc::E2BIG)
            ) =>
        {
            // Load again with the log on, to say what the verifier
            // objected to (the first attempt runs without: a log costs).
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let error = bpf(BPF_PROG_LOAD, &mut attr).err().unwrap_or(error);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            Err(LoadError {
                error,
                log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
        Err(error) => Err(LoadError {
            error,
            log: String::new(),
        }),
    }
}

/// Runs the loaded program `repeat` times on `payload` as if it were a
/// UDP payload: its return value and the mean nanoseconds per run.
pub fn test_run(prog: &OwnedFd, payload: &[u8], repeat: u32) -> io::Result<(u32, u32)> {
    // The kernel builds an Ethernet frame from the input and strips its
    // 14-byte header before the program runs; a socket filter on a
    // reuseport group sees the datagram from its UDP payload on.
    let mut frame = vec![0u8; 14];
    frame.extend_from_slice(payload);
    let mut attr = TestRun {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok((attr.retval, attr.duration))
}

/// Makes `prog` choose the socket for every datagram of the reuseport
/// group `socket` belongs to (all sockets bound to its address with
/// `SO_REUSEPORT`): it returns an index in the order they joined; an index
/// past the end leaves the choice to the kernel's hash.
pub fn attach_reuseport<S: AsRawFd>(socket: &S, prog: &OwnedFd) -> io::Result<()> {
    set_socket_int(socket, SO_ATTACH_REUSEPORT_EBPF, prog.as_raw_fd())
}

/// Removes the program from the reuseport group of `socket`, so that the
/// kernel's 4-tuple hash chooses again. ENOENT when there was none.
pub fn detach_reuseport<S: AsRawFd>(socket: &S) -> io::Result<()> {
    set_socket_int(socket, SO_DETACH_REUSEPORT_BPF, 0)
}

/// `setsockopt(SOL_SOCKET, option, &value)` for an int option.
fn set_socket_int<S: AsRawFd>(
    socket: &S,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid socket, and an int option of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
