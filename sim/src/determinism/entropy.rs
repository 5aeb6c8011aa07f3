//! OS entropy for a simulated run: `getrandom` and `getentropy`, overridden for the whole
//! simulation process, answer from the run's seed on the thread that runs the simulation.
//!
//! Everything that seeds itself from the OS reaches one of these two libc functions: `rand`'s
//! thread generator (chitchat's gossip peer choice), std's `RandomState` (every `HashMap`),
//! `uuid`, the Noise handshake's ephemeral keys, tempfile names. They find them by symbol
//! (`getrandom` and std look the name up with `dlsym`), and a symbol the simulation binary
//! defines comes before libc's. Threads that are not running a simulation, and every process
//! that does not link this crate (the `troupe` binary, the other test binaries), get the
//! kernel's entropy as before.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    /// The running simulation's generator on this thread, if one runs here.
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes this thread's OS entropy a stream drawn from `seed`, until [`unseed`].
pub(super) fn seed(seed: u64) {
    // A different stream from the one turmoil and the node's own draws use for the same seed.
    let stream = seed ^ 0x5eed_0f0e_e740_b015;
    SEEDED.with(|seeded| *seeded.borrow_mut() = Some(StdRng::seed_from_u64(stream)));
}

/// Gives this thread the kernel's entropy again.
pub(super) fn unseed() {
    SEEDED.with(|seeded| *seeded.borrow_mut() = None);
}

/// Fills `dest` from this thread's seeded stream; `false` if the thread has none (or is being
/// torn down), and then nothing was written.
fn fill_seeded(dest: &mut [u8]) -> bool {
    SEEDED
        .try_with(|seeded| match seeded.try_borrow_mut() {
            Ok(mut seeded) => match seeded.as_mut() {
                Some(rng) => {
                    rng.fill_bytes(dest);
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false)
}

/// `getrandom(2)`: the seeded stream on a simulation's thread, the kernel's entropy elsewhere.
///
/// # Safety
/// `buf` must be valid for writes of `buflen` bytes, as libc's `getrandom` requires.
#[no_mangle]
pub unsafe extern "C" fn getrandom(buf: *mut u8, buflen: usize, flags: u32) -> isize {
    if buf.is_null() || buflen == 0 {
        // The probe `getrandom` makes to learn whether the call exists.
        return unsafe { libc::syscall(libc::SYS_getrandom, buf, buflen, flags) as isize };
    }
    // SAFETY: the caller guarantees `buf` is valid for `buflen` bytes.
    let dest = unsafe { std::slice::from_raw_parts_mut(buf, buflen) };
    if fill_seeded(dest) {
        return buflen as isize;
    }
    // SAFETY: forwarded as received.
    unsafe { libc::syscall(libc::SYS_getrandom, buf, buflen, flags) as isize }
}

/// `getentropy(3)`: at most 256 bytes, through [`getrandom`].
///
/// # Safety
/// `buf` must be valid for writes of `buflen` bytes.
#[no_mangle]
pub unsafe extern "C" fn getentropy(buf: *mut u8, buflen: usize) -> libc::c_int {
    if buflen > 256 {
        // SAFETY: errno is thread-local and always writable.
        unsafe { *libc::__errno_location() = libc::EIO };
        return -1;
    }
    let mut filled = 0;
    while filled < buflen {
        // SAFETY: the rest of the caller's buffer.
        let got = unsafe { getrandom(buf.add(filled), buflen - filled, 0) };
        if got < 0 {
            return -1;
        }
        filled += got as usize;
    }
    0
}
