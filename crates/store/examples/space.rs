//! Where a sled store's bytes go (docs/benchmarks.md, issue 10): the sum of the stored values
//! per key prefix, segments by chunk encoding, against the directory's size on disk.
//!
//! `cargo run --release -p arrears-store --example space -- STORE_DIR`

use std::collections::BTreeMap;
use std::path::Path;

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: space STORE_DIR");
    let dir = Path::new(&dir);
    let on_disk = dir_size(dir);
    let db = arrears_store::sled_backend::open_raw(dir).unwrap_or_else(|e| panic!("{e}"));
    let tree = db.open_tree("arrears").expect("the arrears tree");
    // prefix → (values, key bytes, value bytes)
    let mut by_prefix: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut by_encoding: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new();
    for kv in tree.iter() {
        let (k, v) = kv.expect("readable");
        let p = by_prefix.entry((k[0] as char).to_string()).or_default();
        p.0 += 1;
        p.1 += k.len() as u64;
        p.2 += v.len() as u64;
        if k[0] == b'e' {
            let e = by_encoding.entry(v[0]).or_default();
            e.0 += 1;
            e.1 += v.len() as u64;
            e.2 += arrears_store::chunk::events_len(&v).unwrap_or(0) as u64;
        }
    }
    let (mut keys, mut values) = (0, 0);
    println!("prefix  values  key_bytes  value_bytes");
    for (p, (n, k, v)) in &by_prefix {
        println!("{p:>6} {n:>7} {k:>10} {v:>12}");
        keys += k;
        values += v;
    }
    for (enc, (n, v, raw)) in &by_encoding {
        println!("segments of encoding {enc}: {n}, {v} bytes stored, {raw} bytes of events before compression");
    }
    println!("keys + values: {} bytes", keys + values);
    println!(
        "directory on disk: {on_disk} bytes ({:.2}× keys + values)",
        on_disk as f64 / (keys + values) as f64
    );
}
