//! The in-memory backend: the simplest thing that meets the [`Backend`] contract. It proves the
//! seam (the conformance suite runs against it and sled alike) and serves tests and `project`
//! runs that need no durability. Chunks are stored in the same byte format as on disk.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::backend::{Backend, SealedBatch};
use crate::{chunk, Head, LogEntry, RawChunk, RawStream, StoreError};

#[derive(Default)]
struct Mem {
    streams: BTreeMap<Uuid, Vec<Arc<[u8]>>>,
    heads: BTreeMap<Uuid, Head>,
    ids: HashMap<Uuid, (Uuid, u64)>,
    /// The global log, one entry per event.
    log: Vec<(Uuid, u64)>,
    snapshots: BTreeMap<Uuid, Arc<[u8]>>,
}

/// A store that lives as long as the process.
#[derive(Default)]
pub struct MemoryBackend {
    mem: RwLock<Mem>,
}

struct Shared(Arc<[u8]>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn raw(bytes: &Arc<[u8]>) -> RawChunk {
    RawChunk::new(Shared(bytes.clone()))
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Mem> {
        self.mem.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrite the bytes of one stored chunk of `loan` (index `i` in seq order), as an attacker
    /// with write access to the storage would. For tamper-detection tests.
    pub fn tamper(&self, loan: &Uuid, i: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let mut m = self.write();
        let chunks = m.streams.get_mut(loan).expect("a stored loan");
        let mut bytes = chunks[i].to_vec();
        f(&mut bytes);
        chunks[i] = bytes.into();
    }

    /// Remove a loan's chunk `i` (a deleted event run). For tamper-detection tests.
    pub fn remove_chunk(&self, loan: &Uuid, i: usize) {
        self.write()
            .streams
            .get_mut(loan)
            .expect("a stored loan")
            .remove(i);
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn read_stream(&self, loan: &Uuid) -> Result<RawStream, StoreError> {
        Ok(self
            .read()
            .streams
            .get(loan)
            .map(|cs| cs.iter().map(raw).collect())
            .unwrap_or_default())
    }

    fn scan_streams(
        &self,
        f: &mut dyn FnMut(Uuid, RawStream) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // Copy the handles out first so `f` may call back into the store.
        let all: Vec<(Uuid, RawStream)> = self
            .read()
            .streams
            .iter()
            .map(|(l, cs)| (*l, cs.iter().map(raw).collect()))
            .collect();
        for (l, s) in all {
            f(l, s)?;
        }
        Ok(())
    }

    fn scan_heads(
        &self,
        f: &mut dyn FnMut(Uuid, Head) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let all: Vec<(Uuid, Head)> = self.read().heads.iter().map(|(l, h)| (*l, *h)).collect();
        for (l, h) in all {
            f(l, h)?;
        }
        Ok(())
    }

    fn locate(&self, event_id: &Uuid) -> Result<Option<(Uuid, u64)>, StoreError> {
        Ok(self.read().ids.get(event_id).copied())
    }

    fn scan_log(&self, from: u64, f: &mut dyn FnMut(LogEntry) -> bool) -> Result<(), StoreError> {
        let log: Vec<(Uuid, u64)> = self.read().log.clone();
        for (i, (loan_id, seq)) in log.into_iter().enumerate() {
            let position = i as u64 + 1;
            if position >= from
                && !f(LogEntry {
                    position,
                    loan_id,
                    seq,
                })
            {
                break;
            }
        }
        Ok(())
    }

    fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.read().log.len() as u64)
    }

    fn commit(&self, batch: &SealedBatch) -> Result<(), StoreError> {
        let mut m = self.write();
        // Check everything before changing anything: all or nothing.
        for l in &batch.loans {
            let head = m.heads.get(&l.loan).map_or(0, |h| h.seq);
            if head != l.prev_seq {
                return Err(StoreError::Raced { loan: l.loan });
            }
        }
        for l in &batch.loans {
            let bytes: Arc<[u8]> = chunk::seal(&l.head, &l.bodies).into();
            m.streams.entry(l.loan).or_default().push(bytes);
            m.heads.insert(l.loan, l.head);
        }
        for (id, loan, seq) in &batch.ids {
            m.ids.insert(*id, (*loan, *seq));
        }
        for (loan, first, n) in &batch.runs {
            for seq in *first..*first + *n as u64 {
                m.log.push((*loan, seq));
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn snapshot(&self, loan: &Uuid) -> Result<Option<RawChunk>, StoreError> {
        Ok(self.read().snapshots.get(loan).map(raw))
    }

    fn scan_snapshots(
        &self,
        f: &mut dyn FnMut(Uuid, RawChunk) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let all: Vec<(Uuid, RawChunk)> = self
            .read()
            .snapshots
            .iter()
            .map(|(l, b)| (*l, raw(b)))
            .collect();
        for (l, b) in all {
            f(l, b)?;
        }
        Ok(())
    }

    fn put_snapshots(&self, snaps: Vec<(Uuid, Vec<u8>)>) -> Result<(), StoreError> {
        let mut m = self.write();
        for (l, b) in snaps {
            m.snapshots.insert(l, b.into());
        }
        Ok(())
    }
}
