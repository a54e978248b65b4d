//! Property tests: the token codec round-trips, and any sequence of lock operations through
//! guards on one thread neither deadlocks nor loses count, with the kernel lock following.

use layerstore_lockfile::{
    Error, Holder, LockFile, LockState, ReadGuard, TOKEN_LEN, Token, WriteGuard,
};
use layerstore_testsupport::locks::{KernelMode, held_by_us};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn token_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>()),
                              tail in proptest::array::uniform32(any::<u8>())) {
        let mut raw = [0u8; TOKEN_LEN];
        raw[..32].copy_from_slice(&bytes);
        raw[32..].copy_from_slice(&tail);
        let token = Token::from_bytes(&raw);
        prop_assert_eq!(token.to_bytes(), raw);
        prop_assert_eq!(Token::from_bytes(&token.to_bytes()), token);
        prop_assert_eq!(&raw[16..20], &token.pid.to_le_bytes());
    }
}

/// One step of a single thread's use of the lock, through two handles on one path.
#[derive(Debug, Clone)]
enum Op {
    /// `rlock()` when it cannot deadlock (no write guard held), else `try_rlock()`.
    Read {
        handle: usize,
    },
    /// `lock()` when nothing is held, else `try_lock()`.
    Write {
        handle: usize,
    },
    TryRead {
        handle: usize,
    },
    TryWrite {
        handle: usize,
    },
    /// Drop the guard at this index (modulo the number held).
    Release {
        index: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize).prop_map(|handle| Op::Read { handle }),
        (0..2usize).prop_map(|handle| Op::Write { handle }),
        (0..2usize).prop_map(|handle| Op::TryRead { handle }),
        (0..2usize).prop_map(|handle| Op::TryWrite { handle }),
        any::<usize>().prop_map(|index| Op::Release { index }),
    ]
}

/// A guard kept alive by the test; dropping it releases the lock.
enum Held<'a> {
    Read { _guard: ReadGuard<'a> },
    Write { _guard: WriteGuard<'a> },
}

fn expect_in_process_would_block<T>(result: Result<T, Error>) -> Result<(), TestCaseError> {
    match result {
        Err(Error::WouldBlock {
            holder: Holder::ThisProcess,
            ..
        }) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("expected WouldBlock, got {e}"))),
        Ok(_) => Err(TestCaseError::fail("expected WouldBlock, got the lock")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lock_sequences_keep_count_and_kernel_lock(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq.lock");
        let handles = [LockFile::open_rw(&path).unwrap(), LockFile::open_rw(&path).unwrap()];
        let mut held: Vec<Held<'_>> = Vec::new();
        for op in ops {
            let writing = held.iter().any(|h| matches!(h, Held::Write { .. }));
            match op {
                Op::Read { handle } | Op::TryRead { handle } if writing => {
                    expect_in_process_would_block(handles[handle].try_rlock())?;
                }
                Op::Read { handle } => {
                    held.push(Held::Read { _guard: handles[handle].rlock().unwrap() });
                }
                Op::TryRead { handle } => {
                    held.push(Held::Read { _guard: handles[handle].try_rlock().unwrap() });
                }
                Op::Write { handle } | Op::TryWrite { handle } if !held.is_empty() => {
                    expect_in_process_would_block(handles[handle].try_lock())?;
                }
                Op::Write { handle } => {
                    held.push(Held::Write { _guard: handles[handle].lock().unwrap() });
                }
                Op::TryWrite { handle } => {
                    held.push(Held::Write { _guard: handles[handle].try_lock().unwrap() });
                }
                Op::Release { index } => {
                    if !held.is_empty() {
                        let index = index % held.len();
                        held.remove(index);
                    }
                }
            }
            let (expected, kernel) = match held.first() {
                None => (LockState::Unlocked, None),
                Some(Held::Write { .. }) => (LockState::Write, Some(KernelMode::Write)),
                Some(Held::Read { .. }) => {
                    (LockState::Read { holders: held.len() }, Some(KernelMode::Read))
                }
            };
            prop_assert_eq!(handles[0].state(), expected);
            prop_assert_eq!(handles[1].state(), expected);
            prop_assert_eq!(held_by_us(&path), kernel);
        }
        held.clear();
        prop_assert_eq!(handles[0].state(), LockState::Unlocked);
        prop_assert_eq!(held_by_us(&path), None);
    }
}
