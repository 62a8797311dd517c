//! Wakes a worker that sleeps in poll(): an eventfd, written only while the
//! worker says it is asleep, so a busy worker costs its peers no syscall.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

pub struct Wake {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Wake {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Wake {
            fd,
            sleeping: AtomicBool::new(false),
        })
    }

    /// Called by the worker just before it re-checks its inputs and sleeps.
    pub fn arm(&self) {
        self.sleeping.store(true, SeqCst);
    }

    pub fn disarm(&self) {
        self.sleeping.store(false, SeqCst);
        let mut value = 0u64;
        // SAFETY: reads 8 bytes into a live u64; non-blocking, so an unset
        // eventfd just answers EAGAIN.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut value as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }

    /// Called by anyone who gave the worker something to do.
    pub fn notify(&self) {
        if self.sleeping.load(SeqCst) {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
            unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
        }
    }
}

impl AsRawFd for Wake {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
