//! Job ids as operators type them: the full id or a unique prefix of it, in any case
//! (git-style). Job ids are ULIDs (upper-case Crockford base32), so a prefix is one
//! range seek on the primary key (`id >= prefix AND id < prefix-with-its-last-
//! character-incremented`), never a scan.

use rusqlite::{params, Connection, OptionalExtension};

/// Longest text taken as a job id or prefix (a ULID has 26 characters).
pub const MAX_ID_LEN: usize = 64;

/// How many candidates an ambiguous prefix lists.
pub const CANDIDATES: usize = 10;

/// How far the count of an ambiguous prefix's matches goes before it says "more".
pub const COUNT_CAP: i64 = 100_000;

/// What a typed id names.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Exactly one job: its full id.
    One(String),
    /// No job.
    None,
    /// Several jobs: the first [`CANDIDATES`] ids in order, and how many match in all
    /// (counted up to [`COUNT_CAP`]).
    Ambiguous { first: Vec<String>, matches: i64 },
}

/// The job `typed` names: its exact id, else the one job whose id starts with it
/// (compared case-insensitively for ULIDs). Empty, over-long or non-ASCII text
/// names no job.
pub fn resolve(conn: &Connection, typed: &str) -> rusqlite::Result<Resolved> {
    if typed.is_empty() || typed.len() > MAX_ID_LEN {
        return Ok(Resolved::None);
    }
    let exact: Option<String> = conn
        .prepare_cached("SELECT id FROM jobs WHERE id = ?1")?
        .query_row([typed], |r| r.get(0))
        .optional()?;
    if let Some(id) = exact {
        return Ok(Resolved::One(id));
    }
    if !typed.chars().all(|c| c.is_ascii_graphic()) {
        return Ok(Resolved::None);
    }
    let mut prefixes = vec![typed.to_ascii_uppercase()];
    if prefixes[0] != typed {
        prefixes.push(typed.to_string());
    }
    let mut first: Vec<String> = Vec::new();
    let mut matches = 0;
    for prefix in &prefixes {
        let (low, high) = range(prefix);
        let ids: Vec<String> = conn
            .prepare_cached(&format!(
                "SELECT id FROM jobs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT {}",
                CANDIDATES + 1
            ))?
            .query_map(params![low, high], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            continue;
        }
        matches += if ids.len() > CANDIDATES {
            conn.prepare_cached(&format!(
                "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE id >= ?1 AND id < ?2 LIMIT {COUNT_CAP})"
            ))?
            .query_row(params![low, high], |r| r.get(0))?
        } else {
            ids.len() as i64
        };
        first.extend(ids);
    }
    first.sort();
    first.dedup();
    Ok(match (first.len(), matches) {
        (0, _) => Resolved::None,
        (1, 1) => Resolved::One(first.remove(0)),
        _ => {
            first.truncate(CANDIDATES);
            Resolved::Ambiguous { first, matches }
        }
    })
}

/// The half-open range of ids that start with the ASCII `prefix`: its last byte
/// incremented is above every id that starts with it.
fn range(prefix: &str) -> (String, String) {
    let mut high = prefix.as_bytes().to_vec();
    if let Some(last) = high.last_mut() {
        // ASCII graphic, so at most 0x7E: the increment stays ASCII.
        *last += 1;
    }
    (
        prefix.to_string(),
        String::from_utf8(high).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn the_range_of_a_prefix_covers_exactly_the_ids_that_start_with_it() {
        let (low, high) = range("01J2Z");
        assert_eq!((low.as_str(), high.as_str()), ("01J2Z", "01J2["));
        for inside in ["01J2Z", "01J2Z0", "01J2ZZZZZZ"] {
            assert!(low.as_str() <= inside && inside < high.as_str(), "{inside}");
        }
        for outside in ["01J2Y", "01J2", "01J3", "01J2[A"] {
            assert!(
                !(low.as_str() <= outside && outside < high.as_str()),
                "{outside}"
            );
        }
    }
}
