//! The shared handle under every store: the RocksDB instance with its column
//! families, the write options (WAL always on, fsync per write when
//! `sync_writes` is set), the striped per-user locks that serialise
//! read-modify-write of a user's counters, and small get/scan helpers that
//! turn RocksDB results into `StorageError`. Reads through a pending
//! batch are in `db/through.rs`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, FlushOptions, IteratorMode,
    Options, ReadOptions, WriteBatch, WriteOptions,
};

use crate::batch::{Batch, Family, Write};
use crate::keys::{self, KeyRange};
use crate::{StorageError, StoreOptions, codec};

mod through;

/// The schema this build writes; `open` refuses a database from a newer one.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// Number of lock stripes: enough that unrelated users rarely share one.
const STRIPES: usize = 256;

pub(crate) struct Db {
    db: DB,
    write_opts: WriteOptions,
    /// Writes to one user's records take that user's stripe. The router
    /// already gives each user one writer; this makes the counters right
    /// even for a caller that does not (an admin tool, a test).
    stripes: Box<[Mutex<()>]>,
    pub(crate) opts: StoreOptions,
}

/// RocksDB's own figures, summed over the column families where they are
/// kept per family: what operators watch for a store that falls behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Bytes of the table files in use.
    pub live_sst_bytes: u64,
    /// Bytes of the memtables.
    pub memtable_bytes: u64,
    /// RocksDB's estimate of the bytes compaction must rewrite.
    pub pending_compaction_bytes: u64,
    pub running_compactions: u64,
    /// Writes are stopped now (a write stall).
    pub write_stopped: bool,
    /// The rate writes are slowed to, in bytes per second; 0 when they
    /// are not slowed.
    pub delayed_write_rate: u64,
    /// RocksDB's estimate of the keys of the offline store: about one per
    /// stored message (and one per user who has any).
    pub offline_keys: u64,
    /// Bytes of the offline store's table files and memtables.
    pub offline_bytes: u64,
}

fn cf_options() -> Options {
    let mut o = Options::default();
    o.set_compression_type(DBCompressionType::Lz4);
    o
}

impl Db {
    pub(crate) fn open(path: &Path, opts: StoreOptions) -> Result<Db, StorageError> {
        std::fs::create_dir_all(path)?;
        let mut db_opts = cf_options();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // A write-ahead log file is kept until every column family with
        // writes in it has flushed them. Families written rarely (accounts,
        // Raft meta) would otherwise pin every log file written since:
        // a million PubSub nodes left 3.4 GB of log next to 168 MB of
        // tables. Past this total, the families holding the oldest file
        // are flushed.
        db_opts.set_max_total_wal_size(opts.max_wal_bytes);
        // Open every column family already on disk too (a newer build may
        // have added some), then ours.
        let mut names: Vec<String> = DB::list_cf(&db_opts, path).unwrap_or_default();
        for cf in keys::COLUMN_FAMILIES {
            if !names.iter().any(|n| n == cf) {
                names.push(cf.to_string());
            }
        }
        let cfs = names
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, cf_options()));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;

        let mut write_opts = WriteOptions::default();
        write_opts.disable_wal(false);
        write_opts.set_sync(opts.sync_writes);

        let this = Db {
            db,
            write_opts,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            opts,
        };
        this.check_schema()?;
        Ok(this)
    }

    pub(crate) fn engine_stats(&self) -> EngineStats {
        let mut st = EngineStats::default();
        let names = std::iter::once("default").chain(keys::COLUMN_FAMILIES.iter().copied());
        for name in names {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            let get = |p: &str| {
                self.db
                    .property_int_value_cf(cf, p)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            st.live_sst_bytes += get("rocksdb.live-sst-files-size");
            st.memtable_bytes += get("rocksdb.cur-size-all-mem-tables");
            st.pending_compaction_bytes += get("rocksdb.estimate-pending-compaction-bytes");
            if name == keys::CF_OFFLINE {
                st.offline_keys = get("rocksdb.estimate-num-keys");
                st.offline_bytes =
                    get("rocksdb.live-sst-files-size") + get("rocksdb.cur-size-all-mem-tables");
            }
        }
        let get = |p: &str| self.db.property_int_value(p).ok().flatten().unwrap_or(0);
        st.running_compactions = get("rocksdb.num-running-compactions");
        st.write_stopped = get("rocksdb.is-write-stopped") != 0;
        st.delayed_write_rate = get("rocksdb.actual-delayed-write-rate");
        st
    }

    fn check_schema(&self) -> Result<(), StorageError> {
        let key = keys::schema();
        match self.db.get(&key)? {
            Some(v) => {
                let found = codec::decode_counter("schema version", &v)?;
                if found > SCHEMA_VERSION {
                    return Err(StorageError::UnsupportedSchema {
                        found: u32::try_from(found).unwrap_or(u32::MAX),
                        supported: SCHEMA_VERSION as u32,
                    });
                }
                Ok(())
            }
            None => {
                self.db.put_opt(
                    &key,
                    codec::encode_counter(SCHEMA_VERSION),
                    &self.write_opts,
                )?;
                Ok(())
            }
        }
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or(StorageError::MissingColumnFamily(name))
    }

    /// Locks the stripe of one user for a read-modify-write.
    pub(crate) fn lock_user(&self, user: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        user.hash(&mut h);
        let i = (h.finish() % STRIPES as u64) as usize;
        // The guarded value is (), so a poisoned lock protects nothing.
        self.stripes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    pub(crate) fn exists(&self, cf: &'static str, key: &[u8]) -> Result<bool, StorageError> {
        Ok(self.db.get_pinned_cf(self.cf(cf)?, key)?.is_some())
    }

    /// Writes one batch atomically, through the WAL.
    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        Ok(self.db.write_opt(batch, &self.write_opts)?)
    }

    /// Adds the writes of a planned batch to a RocksDB batch.
    pub(crate) fn add_to(&self, b: &Batch, out: &mut WriteBatch) -> Result<(), StorageError> {
        for w in b.writes() {
            self.add_write(w, out)?;
        }
        Ok(())
    }

    /// Adds one planned write to a RocksDB batch.
    pub(crate) fn add_write(&self, w: &Write, out: &mut WriteBatch) -> Result<(), StorageError> {
        match w {
            Write::Put { family, key, value } => out.put_cf(self.cf(family.cf())?, key, value),
            Write::Delete { family, key } => out.delete_cf(self.cf(family.cf())?, key),
            Write::DeleteRange { family, start, end } => {
                out.delete_range_cf(self.cf(family.cf())?, start, end)
            }
        }
        Ok(())
    }

    /// From one consistent snapshot of the database: a point read in
    /// `get_cf`, the records of `range` in `scan_cf`, and the user data
    /// records whose owner `owns` accepts (with their family).
    #[allow(clippy::type_complexity)]
    pub(crate) fn read_group(
        &self,
        get_cf: &'static str,
        key: &[u8],
        scan_cf: &'static str,
        range: &KeyRange,
        owns: Option<&crate::raft::Owns>,
    ) -> Result<
        (
            Option<Vec<u8>>,
            Vec<crate::raft::Record>,
            Vec<(Family, crate::raft::Record)>,
        ),
        StorageError,
    > {
        let snap = self.db.snapshot();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let value = self.db.get_cf_opt(self.cf(get_cf)?, key, &ro)?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let records = self.scan_opt(self.cf(scan_cf)?, ro, range, &mut |k, v| {
            Ok((k.to_vec(), v.to_vec()))
        })?;
        let mut owned = Vec::new();
        if let Some(owns) = owns {
            for family in Family::ALL {
                let mut ro = ReadOptions::default();
                ro.set_snapshot(&snap);
                for kv in self
                    .db
                    .iterator_cf_opt(self.cf(family.cf())?, ro, IteratorMode::Start)
                {
                    let (k, v) = kv?;
                    if keys::owner(family, &k).is_some_and(|u| owns(&u)) {
                        owned.push((family, (k.to_vec(), v.to_vec())));
                    }
                }
            }
        }
        Ok((value, records, owned))
    }

    /// Adds deletes of every user data record `owns` accepts to `out`.
    pub(crate) fn delete_owned(
        &self,
        owns: &crate::raft::Owns,
        out: &mut WriteBatch,
    ) -> Result<(), StorageError> {
        for family in Family::ALL {
            let cf = self.cf(family.cf())?;
            for kv in self.db.iterator_cf(cf, IteratorMode::Start) {
                let (k, _) = kv?;
                if keys::owner(family, &k).is_some_and(|u| owns(&u)) {
                    out.delete_cf(cf, k);
                }
            }
        }
        Ok(())
    }

    /// Writes a planned batch atomically, through the WAL.
    pub(crate) fn apply(&self, b: &Batch) -> Result<(), StorageError> {
        let mut out = WriteBatch::default();
        self.add_to(b, &mut out)?;
        self.write(out)
    }

    /// Writes one batch atomically through the WAL, fsynced if `sync`
    /// whatever the store's default.
    pub(crate) fn write_sync(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut wo = WriteOptions::default();
        wo.disable_wal(false);
        wo.set_sync(sync || self.opts.sync_writes);
        Ok(self.db.write_opt(batch, &wo)?)
    }

    /// The last record of `range` in key order, if any.
    pub(crate) fn last_in(
        &self,
        cf: &'static str,
        range: &KeyRange,
    ) -> Result<Option<crate::raft::Record>, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(range.start.clone());
        ro.set_iterate_upper_bound(range.end.clone());
        let mut it = self.db.iterator_cf_opt(self.cf(cf)?, ro, IteratorMode::End);
        match it.next() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// A point read and a scan from one consistent snapshot.
    pub(crate) fn get_and_scan<T>(
        &self,
        cf: &'static str,
        key: &[u8],
        range: &KeyRange,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<T, StorageError>,
    ) -> Result<(Option<Vec<u8>>, Vec<T>), StorageError> {
        let snap = self.db.snapshot();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let handle = self.cf(cf)?;
        let value = self.db.get_cf_opt(handle, key, &ro)?;
        let items = self.scan_opt(handle, ro, range, &mut each)?;
        Ok((value, items))
    }

    /// Maps every record in `range`, in key order.
    pub(crate) fn scan<T>(
        &self,
        cf: &'static str,
        range: &KeyRange,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        self.scan_opt(self.cf(cf)?, ReadOptions::default(), range, &mut each)
    }

    fn scan_opt<T>(
        &self,
        handle: &ColumnFamily,
        mut ro: ReadOptions,
        range: &KeyRange,
        each: &mut impl FnMut(&[u8], &[u8]) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        ro.set_iterate_lower_bound(range.start.clone());
        ro.set_iterate_upper_bound(range.end.clone());
        let mut out = Vec::new();
        for kv in self.db.iterator_cf_opt(handle, ro, IteratorMode::Start) {
            let (k, v) = kv?;
            out.push(each(&k, &v)?);
        }
        Ok(out)
    }

    /// Up to `limit` records of `range` mapped by `each`, in key order or
    /// (`reverse`) from the last key down. Keys and values are borrowed
    /// from the iterator: nothing is copied that `each` does not keep.
    pub(crate) fn scan_dir<T>(
        &self,
        cf: &'static str,
        range: &KeyRange,
        reverse: bool,
        limit: usize,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(range.start.clone());
        ro.set_iterate_upper_bound(range.end.clone());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        if reverse {
            it.seek_to_last();
        } else {
            it.seek_to_first();
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            out.push(each(k, v)?);
            if reverse {
                it.prev();
            } else {
                it.next();
            }
        }
        it.status()?;
        Ok(out)
    }

    /// The number of records in `range` (keys only).
    pub(crate) fn count(&self, cf: &'static str, range: &KeyRange) -> Result<usize, StorageError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(range.start.clone());
        ro.set_iterate_upper_bound(range.end.clone());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf)?, ro);
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    /// From one consistent snapshot: every index entry of `range`, each
    /// with the value of the record `primary` names for it (`None` if
    /// there is none), mapped by `each`.
    pub(crate) fn scan_lookup<T>(
        &self,
        cf: &'static str,
        range: &KeyRange,
        mut primary: impl FnMut(&[u8]) -> Result<Vec<u8>, StorageError>,
        mut each: impl FnMut(&[u8], Option<&[u8]>) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let snap = self.db.snapshot();
        let handle = self.cf(cf)?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let index = self.scan_opt(handle, ro, range, &mut |k, _| Ok(k.to_vec()))?;
        let keys = index
            .iter()
            .map(|k| primary(k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snap);
        let values = self
            .db
            .batched_multi_get_cf_opt(handle, keys.iter(), false, &ro);
        let mut out = Vec::with_capacity(index.len());
        for (k, v) in index.iter().zip(values) {
            out.push(each(k, v?.as_deref())?);
        }
        Ok(out)
    }

    /// Syncs the WAL and flushes every memtable to SST files.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_wal(true)?;
        let mut handles = Vec::with_capacity(keys::COLUMN_FAMILIES.len());
        for cf in keys::COLUMN_FAMILIES {
            handles.push(self.cf(cf)?);
        }
        let mut fo = FlushOptions::default();
        fo.set_wait(true);
        self.db.flush_opt(&fo)?;
        self.db.flush_cfs_opt(&handles, &fo)?;
        Ok(())
    }
}
