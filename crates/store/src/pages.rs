//! Snapshot pages: the sled backend keeps many loans' snapshots in one sled value.
//!
//! sled costs about a microsecond and a half per value it reads cold and ten per value it writes,
//! whatever the value's size; one value per loan made reading a million snapshots cost 1.3 s of
//! sled alone, more than the whole reprojection's budget (decision S8). A page holds the
//! snapshots of consecutive loans, in `loan_id` order, up to [`PAGE_LIMIT`] bytes:
//!
//! ```text
//! page  = encoding (u8 = 1) ‖ entry*            key: `p` + the first entry's loan_id
//! entry = loan_id (16) ‖ len (u32 LE) ‖ len bytes (the snapshot, opaque)
//! ```
//!
//! Entries are in strictly increasing `loan_id` order, and a page covers the loans from its key
//! up to the next page's key: a loan's snapshot is in the page with the greatest key not above
//! it. Pages split when they outgrow the limit and never merge (snapshots are never deleted).

use std::ops::Range;

use uuid::Uuid;

/// The bytes of entries a page is filled to before the next one starts (a single larger snapshot
/// gets a page of its own). 8 KiB is ~24 micro-loan snapshots: reading a page costs sled once
/// per 24 loans, and rewriting one loan's snapshot rewrites at most 8 KiB. sled keeps up to 16
/// values in a leaf and writes a leaf over 128 KiB as a file of its own; 8 KiB pages stay under.
pub const PAGE_LIMIT: usize = 8 * 1024;
/// The page layout above.
pub const PAGE_ENCODING: u8 = 1;
const ENTRY_HEADER: usize = 16 + 4;

/// The entries of a page: each loan and where its snapshot lies in `page`. Refuses a page that is
/// not of [`PAGE_ENCODING`], that is empty, cut short, or out of loan order.
pub fn entries(page: &[u8]) -> Result<Vec<(Uuid, Range<usize>)>, String> {
    match page.first() {
        Some(&PAGE_ENCODING) => {}
        Some(other) => return Err(format!("snapshot page encoding {other} is unknown")),
        None => return Err("empty snapshot page".into()),
    }
    let mut out = Vec::with_capacity(32);
    let mut at = 1;
    while at < page.len() {
        let header = page
            .get(at..at + ENTRY_HEADER)
            .ok_or_else(|| format!("snapshot page cut short at byte {at}"))?;
        let loan = Uuid::from_slice(&header[..16]).expect("16 bytes");
        let len = u32::from_le_bytes(header[16..].try_into().expect("4 bytes")) as usize;
        let start = at + ENTRY_HEADER;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= page.len())
            .ok_or_else(|| format!("snapshot of loan {loan} runs past its page"))?;
        if out.last().is_some_and(|(prev, _)| *prev >= loan) {
            return Err(format!("snapshot page out of loan order at loan {loan}"));
        }
        out.push((loan, start..end));
        at = end;
    }
    if out.is_empty() {
        return Err("snapshot page holds no snapshot".into());
    }
    Ok(out)
}

/// One page of `entries` (in strictly increasing loan order).
pub fn encode(entries: &[(Uuid, &[u8])]) -> Vec<u8> {
    debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(
        !entries.is_empty(),
        "a snapshot page holds at least one snapshot"
    );
    let size = 1 + entries
        .iter()
        .map(|(_, b)| ENTRY_HEADER + b.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(PAGE_ENCODING);
    for (loan, bytes) in entries {
        let len = u32::try_from(bytes.len()).expect("a snapshot is far below 4 GiB");
        out.extend_from_slice(loan.as_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    debug_assert_eq!(out.len(), size);
    out
}

/// `entries` (in loan order) cut into pages of at most [`PAGE_LIMIT`] bytes of entries each; a
/// page holds at least one entry.
pub fn paginate<T: AsRef<[u8]>>(entries: &[(Uuid, T)]) -> Vec<&[(Uuid, T)]> {
    let mut pages = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (_, bytes)) in entries.iter().enumerate() {
        let n = ENTRY_HEADER + bytes.as_ref().len();
        if i > start && size + n > PAGE_LIMIT {
            pages.push(&entries[start..i]);
            (start, size) = (i, 0);
        }
        size += n;
    }
    if start < entries.len() {
        pages.push(&entries[start..]);
    }
    pages
}

/// `old` with `new` merged in (both in loan order; `new` wins for a loan in both).
pub fn merge<'a>(old: &[(Uuid, &'a [u8])], new: &[(Uuid, &'a [u8])]) -> Vec<(Uuid, &'a [u8])> {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.0 < n.0 => {
                out.push(*o);
                i += 1;
            }
            (Some(o), Some(n)) if o.0 == n.0 => {
                out.push(*n);
                i += 1;
                j += 1;
            }
            (_, Some(n)) => {
                out.push(*n);
                j += 1;
            }
            (Some(o), None) => {
                out.push(*o);
                i += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loan(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_page_reads_back_what_was_written() {
        let a = vec![7u8; 300];
        let ents = vec![(loan(1), &b""[..]), (loan(2), &a[..]), (loan(9), &b"x"[..])];
        let page = encode(&ents);
        let read: Vec<_> = entries(&page)
            .unwrap()
            .into_iter()
            .map(|(l, r)| (l, &page[r]))
            .collect();
        assert_eq!(read, ents);
    }

    #[test]
    fn damaged_pages_are_refused_not_misread() {
        let page = encode(&[(loan(1), &b"abc"[..]), (loan(2), &b"de"[..])]);
        assert!(entries(&[]).unwrap_err().contains("empty"));
        assert!(entries(&[1]).unwrap_err().contains("no snapshot"));
        assert!(entries(&[2]).unwrap_err().contains("encoding 2"));
        for cut in 1..page.len() {
            let short = &page[..cut];
            // Cutting at an entry boundary leaves a shorter, valid page; anywhere else is refused.
            if cut != 1 + 20 + 3 {
                assert!(entries(short).is_err(), "cut at {cut}");
            }
        }
        let swapped = encode(&[(loan(2), &b"de"[..])]);
        let mut bad = page.clone();
        bad.extend_from_slice(&swapped[1..]);
        assert!(entries(&bad).unwrap_err().contains("out of loan order"));
    }

    #[test]
    fn pages_fill_to_the_limit_and_a_large_snapshot_has_its_own() {
        let small = vec![0u8; 1000];
        let big = vec![0u8; PAGE_LIMIT * 2];
        let mut ents: Vec<(Uuid, Vec<u8>)> = (0..20).map(|i| (loan(i), small.clone())).collect();
        ents.insert(10, (loan(100), big));
        let pages = paginate(&ents);
        assert_eq!(pages.iter().map(|p| p.len()).sum::<usize>(), ents.len());
        for p in &pages {
            let size: usize = p.iter().map(|(_, b)| ENTRY_HEADER + b.len()).sum();
            assert!(
                size <= PAGE_LIMIT || p.len() == 1,
                "{size} bytes in {}",
                p.len()
            );
        }
        assert!(pages
            .iter()
            .any(|p| p.len() == 1 && p[0].1.len() == PAGE_LIMIT * 2));
        // Full pages: each but the last would overflow with the next page's first entry.
        assert!(pages.len() <= 5);
    }

    #[test]
    fn merge_keeps_loan_order_and_the_new_snapshot() {
        let old = [
            (loan(1), &b"a"[..]),
            (loan(3), &b"c"[..]),
            (loan(5), &b"e"[..]),
        ];
        let new = [
            (loan(0), &b"Z"[..]),
            (loan(3), &b"C"[..]),
            (loan(6), &b"F"[..]),
        ];
        let got: Vec<_> = merge(&old, &new)
            .into_iter()
            .map(|(l, b)| (l.as_u128(), b))
            .collect();
        assert_eq!(
            got,
            vec![(0, &b"Z"[..]), (1, b"a"), (3, b"C"), (5, b"e"), (6, b"F")]
        );
    }
}
